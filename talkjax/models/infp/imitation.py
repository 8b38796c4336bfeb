"""INFP stage 1: motion-based head imitation.

The motion encoder reads the driving face with everything but the eye and mouth regions
masked out (`keep_regions`), so the motion latent carries where the eyes and mouth are and
what they do, and little of who the person is; an appearance encoder reads the portrait; the
shared warping renderer (talkjax/nn/motion_renderer.py, also IF-MDM's) animates the portrait
with the motion latent: z = w_portrait + D (m_driving - m_portrait), where m_portrait is the
motion encoder's reading of the masked portrait.

Regions are boxes (top, left, bottom, right) in fractions of the face crop, in the framing
the data and `--crop auto` put the face in: fixed boxes wide enough to hold the eyes and
mouth as the head moves. (The paper keeps the eye and mouth regions of each frame; a fixed box
needs no landmark detector in the data pipeline or at sampling time: a deviation.)
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from talkjax.nn.motion_renderer import DirectionBank, ImageEncoder, MotionHead, WarpDecoder

# eyes (with the brows), mouth (with the chin's top): SynthTalk's and --crop auto's framing
DEFAULT_REGIONS = ((0.18, 0.12, 0.52, 0.88), (0.55, 0.22, 0.9, 0.78))


def region_mask(resolution: int, regions) -> np.ndarray:
  """(R, R, 1) float32: 1 inside any region box, 0 elsewhere."""
  mask = np.zeros((resolution, resolution, 1), np.float32)
  for top, left, bottom, right in regions:
    r = lambda f: int(round(float(f) * resolution))
    mask[r(top):r(bottom), r(left):r(right)] = 1.0
  return mask


class HeadImitation(nn.Module):
  """Stage 1's generator: (portrait, driving) -> the portrait redrawn with the driving
  face's motion. Same interface as IF-MDM's motion autoencoder (encode_appearance,
  encode_motion, render), so tools that read motion codes treat both alike."""
  resolution: int
  channels: Sequence[int] = (32, 64, 128, 128)
  latent: int = 128
  directions: int = 20
  regions: tuple = DEFAULT_REGIONS
  dtype: jnp.dtype | None = None

  def setup(self):
    self.appearance_encoder = ImageEncoder(self.channels, self.latent, dtype=self.dtype)
    self.motion_encoder = ImageEncoder(self.channels, self.latent, dtype=self.dtype)
    self.motion_head = MotionHead(self.directions, dtype=self.dtype)
    self.bank = DirectionBank(self.latent, self.directions)
    self.decoder = WarpDecoder(self.channels, dtype=self.dtype)

  def masked(self, image):
    """Everything outside the eye and mouth regions set to 0 (mid-grey in [-1, 1])."""
    return image * jnp.asarray(region_mask(self.resolution, self.regions), image.dtype)

  def encode_motion(self, image):
    """Driving face -> motion latent m (B, directions) in (-1, 1)."""
    return self.motion_head(self.motion_encoder(self.masked(image))[1])

  def encode_appearance(self, image):
    """Portrait -> (features, latent, its own motion latent, the image)."""
    features, w = self.appearance_encoder(image)
    return features, w, self.encode_motion(image), image

  def render(self, appearance, motion):
    features, w, motion_portrait, image = appearance
    z = w + (motion - motion_portrait).astype(w.dtype) @ self.bank().T.astype(w.dtype)
    return self.decoder(z, features, image)[0]

  def __call__(self, source, driving):
    return self.render(self.encode_appearance(source), self.encode_motion(driving))
