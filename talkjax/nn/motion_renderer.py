"""A LIA-style warping renderer and its training losses, shared by the motion-latent
families (IF-MDM's motion autoencoder, INFP's head imitation).

An encoder turns an image into multi-scale features and a latent w. Motion is a small code
(`directions` dims) applied along a learnable direction bank made orthonormal by QR:
z = w_source + D (m_driving - m_source). A decoder modulated by z predicts, at every scale,
a flow field and a mask, warps the source's features with the flow and blends them in; a
last block refines and paints RGB. At full resolution a last flow and mask warp the source
image itself and blend it with the painted RGB: the renderer starts as (almost) a copy of
the source, so identity is kept from the first step and training is spent on motion and on
what warping cannot show (the inside of an opening mouth).

`reconstruction_losses` is the image objective both families train the renderer with:
motion-weighted L1 + LPIPS + non-saturating GAN with R1.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from talkjax.nn.convs import ResBlock, conv
from talkjax.nn.layers import Dense, logical_init
from talkjax.nn.perceptual import lpips
from talkjax.nn.warp import warp


class ImageEncoder(nn.Module):
  """(B, R, R, 3) in [-1, 1] -> (features fine-to-coarse, latent (B, latent))."""
  channels: Sequence[int]
  latent: int
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, image):
    h = conv(self.channels[0], 3, dtype=self.dtype, name="stem")(image)
    features = []
    for i, c in enumerate(self.channels):
      h = ResBlock(c, "down", dtype=self.dtype, name=f"down_{i}")(h)
      features.append(h)
    flat = h.reshape(h.shape[0], -1)
    w = Dense(self.latent, axes=("channels", "embed"), dtype=self.dtype, name="to_latent")(flat)
    return features, w


class MotionHead(nn.Module):
  """Latent -> motion code alpha in (-1, 1)^directions (a 4-layer MLP)."""
  directions: int
  layers: int = 4
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, w):
    h = w
    for i in range(self.layers - 1):
      h = nn.leaky_relu(Dense(w.shape[-1], axes=("embed", "mlp"), dtype=self.dtype,
                              name=f"fc_{i}")(h), 0.2)
    return jnp.tanh(Dense(self.directions, axes=("mlp", None), dtype=self.dtype, name="out")(h))


class DirectionBank(nn.Module):
  """A learnable (latent x directions) matrix, orthonormalised by QR at every use."""
  latent: int
  directions: int

  @nn.compact
  def __call__(self):
    m = self.param("matrix", logical_init(nn.initializers.orthogonal(), ("embed", None)),
                   (self.latent, self.directions))
    q, r = jnp.linalg.qr(m.astype(jnp.float32))
    # Fix QR's sign ambiguity so each direction follows its column of m continuously.
    return q * jnp.sign(jnp.diagonal(r))[None, :]


class WarpDecoder(nn.Module):
  """z + source features -> image, with a flow and mask per scale."""
  channels: Sequence[int]
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, z, features, source):
    coarse = features[-1]
    b, s = z.shape[0], coarse.shape[1]
    h = Dense(s * s * self.channels[-1], axes=("embed", "mlp"), dtype=self.dtype,
              name="from_latent")(z).reshape(b, s, s, self.channels[-1])
    flows = []
    for i in reversed(range(len(self.channels))):
      c = self.channels[i]
      feat = features[i]
      if h.shape[1] != feat.shape[1]:
        h = ResBlock(c, "up", dtype=self.dtype, name=f"up_{i}")(h)
      film = Dense(2 * h.shape[-1], axes=("embed", "mlp"), dtype=self.dtype, name=f"film_{i}")(z)
      scale, shift = jnp.split(film[:, None, None, :], 2, axis=-1)
      h = h * (1 + scale) + shift
      # Flow and mask start at zero: the untrained decoder copies the source's features.
      fm = conv(3, 3, dtype=self.dtype, zero_init=True, name=f"flow_mask_{i}",
                out_axis="out_channels")(nn.silu(h))
      flow, mask = jnp.tanh(fm[..., :2]), nn.sigmoid(fm[..., 2:])
      warped = warp(feat, flow)
      h = ResBlock(c, dtype=self.dtype, name=f"fuse_{i}")(
          jnp.concatenate([h, mask * warped], axis=-1))
      flows.append(flow)
    h = ResBlock(self.channels[0], "up", dtype=self.dtype, name="up_out")(h)
    h = ResBlock(self.channels[0], dtype=self.dtype, name="refine")(h)
    rgb = jnp.tanh(conv(3, 3, dtype=self.dtype, name="to_rgb", out_axis="out_channels")(nn.silu(h)))
    fm = conv(3, 3, dtype=self.dtype, zero_init=True, name="image_flow_mask",
              out_axis="out_channels")(nn.silu(h))
    flow = jnp.tanh(fm[..., :2])
    keep = nn.sigmoid(fm[..., 2:] + 2.0)  # starts at 0.88: mostly the warped source
    out = keep * warp(source.astype(rgb.dtype), flow) + (1 - keep) * rgb
    return out, flows + [flow]


class Discriminator(nn.Module):
  """Patch-free image critic for the non-saturating GAN loss."""
  channels: Sequence[int] = (32, 64, 128, 128)
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, image):
    h = conv(self.channels[0], 3, dtype=self.dtype, name="stem")(image)
    for i, c in enumerate(self.channels):
      h = ResBlock(c, "down", dtype=self.dtype, name=f"down_{i}")(h)
    h = jnp.mean(nn.leaky_relu(h, 0.2), axis=(1, 2))
    return Dense(1, axes=("embed", None), dtype=self.dtype, name="logit")(h)[:, 0]


def gan_losses(disc_apply, disc_params, real, fake, r1_weight: float):
  """Per-example (generator loss, discriminator loss incl. R1) for simultaneous updates.

  The generator's term sees the discriminator's parameters frozen; the discriminator's
  terms see the fake images frozen. Summed into one objective, one gradient step then
  updates each network by its own loss only.
  """
  frozen = jax.lax.stop_gradient(disc_params)
  g_loss = jax.nn.softplus(-disc_apply(frozen, fake))
  fake_logits = disc_apply(disc_params, jax.lax.stop_gradient(fake))

  def real_logit_sum(x):
    logits = disc_apply(disc_params, x)
    return jnp.sum(logits), logits

  grad_real, real_logits = jax.grad(real_logit_sum, has_aux=True)(real)
  r1 = jnp.sum(grad_real.reshape(real.shape[0], -1) ** 2, axis=-1)
  d_loss = jax.nn.softplus(fake_logits) + jax.nn.softplus(-real_logits) + 0.5 * r1_weight * r1
  return g_loss, d_loss


def reconstruction_losses(fake, real, source, weights, disc_apply=None, disc_params=None):
  """Per-example loss (B,) and scalar metrics of a rendered batch `fake` against `real`,
  both redrawn from `source`. `weights`: l1, motion_weight, perceptual, gan, r1 (a config
  node); `disc_apply(params, images) -> logits` when weights.gan > 0."""
  w = weights
  fake = fake.astype(jnp.float32)
  # Pixels that differ between the two frames (an opening mouth, a turned head) weigh
  # more: most of a talking face is static, and a plain L1 mostly rewards copying it.
  moving = jnp.mean(jnp.abs(real - source), axis=-1, keepdims=True)
  l1 = jnp.mean((1 + w.motion_weight * moving) * jnp.abs(fake - real), axis=(1, 2, 3))
  total = w.l1 * l1
  metrics = {"l1": jnp.mean(l1)}
  if w.perceptual > 0:
    perceptual = lpips(fake, real)
    total = total + w.perceptual * perceptual
    metrics["lpips"] = jnp.mean(perceptual)
  if w.gan > 0:
    g_loss, d_loss = gan_losses(disc_apply, disc_params, real, fake, w.r1)
    total = total + w.gan * g_loss + d_loss
    metrics.update(g_loss=jnp.mean(g_loss), d_loss=jnp.mean(d_loss))
  return total, metrics


def render_frames(renderer, renderer_params, appearance, motion):
  """(B, W, D) motion -> (B, W, R, R, 3) uint8 frames of each example's portrait.

  The W frames of each example are folded into the batch (the appearance repeated per
  frame) rather than vmapped: partitioned over 8 CPU devices the vmapped warp ran about
  9x slower, and XLA's SPMD partitioner (jax 0.10) computed wrong frames for it on meshes
  with both an fsdp and a tensor axis (tests/pipelines/test_sharded_sampling.py). On one
  device both forms run at the same speed."""
  b, w = motion.shape[:2]
  per_frame = jax.tree.map(lambda x: jnp.repeat(x, w, axis=0), appearance)
  rgb = renderer.apply({"params": renderer_params}, per_frame,
                       motion.reshape((b * w,) + motion.shape[2:]), method=renderer.render)
  rgb = rgb.reshape((b, w) + rgb.shape[1:])
  return jnp.clip(jnp.round((rgb.astype(jnp.float32) + 1) * 127.5), 0, 255).astype(jnp.uint8)


def to_model_image(image):
  """uint8 (..., R, R, 3) or float in [-1, 1] -> float32 in [-1, 1]."""
  image = jnp.asarray(image)
  if image.dtype == jnp.uint8:
    return image.astype(jnp.float32) / 127.5 - 1.0
  return image.astype(jnp.float32)
