"""IF-MDM stage 1: the implicit motion autoencoder (a LIA-style warping renderer).

The blocks (encoder, motion head, direction bank, warping decoder, critic) live in
talkjax/nn/motion_renderer.py, shared with INFP. Here the motion code alpha is read from the
whole driving image's latent by the motion head: z = w_source + D (alpha_driving -
alpha_source).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from talkjax.nn.motion_renderer import DirectionBank, ImageEncoder, MotionHead, WarpDecoder


class MotionAutoencoder(nn.Module):
  channels: Sequence[int] = (32, 64, 128, 128)
  latent: int = 128
  directions: int = 20
  dtype: jnp.dtype | None = None

  def setup(self):
    self.encoder = ImageEncoder(self.channels, self.latent, dtype=self.dtype)
    self.motion_head = MotionHead(self.directions, dtype=self.dtype)
    self.bank = DirectionBank(self.latent, self.directions)
    self.decoder = WarpDecoder(self.channels, dtype=self.dtype)

  def encode_appearance(self, image):
    """Source image -> (features, latent, its own motion code, the image)."""
    features, w = self.encoder(image)
    return features, w, self.motion_head(w), image

  def encode_motion(self, image):
    """Driving image -> motion code alpha (B, directions)."""
    return self.motion_head(self.encoder(image)[1])

  def render(self, appearance, alpha):
    """Renders the source with motion code `alpha` (B, directions)."""
    features, w, alpha_source, image = appearance
    z = w + (alpha - alpha_source).astype(w.dtype) @ self.bank().T.astype(w.dtype)
    return self.decoder(z, features, image)[0]

  def __call__(self, source, driving):
    return self.render(self.encode_appearance(source), self.encode_motion(driving))
