"""Classifier-free guidance: out = uncond + scale * (cond - uncond)."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def combine(cond, uncond, scale: float):
  return uncond + scale * (cond - uncond)


def guided(model: Callable, scale: float, drop_condition: Callable) -> Callable:
  """Wraps model(x_t, t, cond) into one batched call over [cond; uncond].

  `drop_condition(cond)` returns the unconditional version of the conditioning pytree
  (zeroed audio, null emotion, ...). scale == 1 skips the unconditional pass.
  """
  if scale == 1.0:
    return model

  def fn(x_t, t, cond):
    both = jax.tree.map(lambda c, u: jnp.concatenate([c, u]), cond, drop_condition(cond))
    out = model(jnp.concatenate([x_t, x_t]), jnp.concatenate([t, t]), both)
    c, u = jnp.split(out, 2)
    return combine(c, u, scale)
  return fn
