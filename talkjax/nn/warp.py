"""Flow warping: sample a feature map at positions displaced by a flow field."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def identity_grid(height: int, width: int, dtype=jnp.float32):
  """(H, W, 2) pixel-centre coordinates (y, x) in [-1, 1]."""
  ys = (jnp.arange(height, dtype=dtype) + 0.5) / height * 2 - 1
  xs = (jnp.arange(width, dtype=dtype) + 0.5) / width * 2 - 1
  return jnp.stack(jnp.meshgrid(ys, xs, indexing="ij"), axis=-1)


def bilinear_sample(features, coords):
  """features (B, H, W, C) sampled at coords (B, h, w, 2) = (y, x) in [-1, 1].

  Pixel centres as in `identity_grid`; positions outside the map read the border.
  """
  b, h, w, _ = features.shape
  y = (coords[..., 0] + 1) * h / 2 - 0.5
  x = (coords[..., 1] + 1) * w / 2 - 0.5
  y0, x0 = jnp.floor(y), jnp.floor(x)
  wy, wx = (y - y0)[..., None], (x - x0)[..., None]

  def gather(yi, xi):
    yi = jnp.clip(yi, 0, h - 1).astype(jnp.int32)
    xi = jnp.clip(xi, 0, w - 1).astype(jnp.int32)
    return jax.vmap(lambda f, yy, xx: f[yy, xx])(features, yi, xi)

  top = gather(y0, x0) * (1 - wx) + gather(y0, x0 + 1) * wx
  bottom = gather(y0 + 1, x0) * (1 - wx) + gather(y0 + 1, x0 + 1) * wx
  return top * (1 - wy) + bottom * wy


def warp(features, flow):
  """Backward warp: output(p) = features(p + flow(p)); flow (B, H, W, 2) in [-1, 1] units."""
  grid = identity_grid(flow.shape[1], flow.shape[2], flow.dtype)
  return bilinear_sample(features, grid[None] + flow)
