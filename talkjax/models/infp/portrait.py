"""INFP stage 2's portrait encoder (`model.portrait`): the person's mood read from the
portrait's pixels, added to the denoiser's conditioning beside the anchor.

Why: how far a resting mouth stays open depends on the mood (SynthTalk's fear, disgust,
surprise and happiness keep it a little open), and a portrait caught mid-word shows its
mouth open for another reason. The stage-1 motion code (20 numbers read from the eye and mouth
regions) barely tells the mood: on 1280 dyadic SynthTalk clips, linear and MLP reads of
the emotion from a first frame's code scored 0.29-0.31 (chance 0.125), where a small CNN
learnt from 8 frames of each clip read held-out people's emotion at 0.96
(experiments/infp/README.md). Not in the paper's description (a deviation).

Training windows give the encoder one of a few frames of their clip (the first and random
others, `model.portrait.frames`), so it learns what holds for the whole clip (who, which mood)
rather than the mouth of one frame; sampling gives the portrait. Every image is first brought
to `model.portrait.resolution` by `portrait_image`, the same function in both.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from talkjax.nn.motion_renderer import ImageEncoder


def portrait_image(image, resolution: int):
  """(B, R, R, 3) float in [-1, 1] -> (B, r, r, 3) float32 at the encoder's resolution, on
  uint8's grid (training caches these images as uint8: sampling sees the same values)."""
  image = jnp.asarray(image, jnp.float32)
  if image.shape[1:3] != (resolution, resolution):
    image = jax.image.resize(image, image.shape[:1] + (resolution, resolution, 3), "linear",
                             antialias=True)
  return jnp.clip(jnp.round((image + 1.0) * 127.5), 0, 255) / 127.5 - 1.0


class PortraitEncoder(nn.Module):
  """(B, r, r, 3) in [-1, 1] -> (B, hidden): one vector added to the denoiser's conditioning."""
  hidden: int
  channels: Sequence[int] = (16, 32, 64, 64)
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, image):
    return ImageEncoder(tuple(self.channels), self.hidden, dtype=self.dtype,
                        name="encoder")(image)[1].astype(jnp.float32)
