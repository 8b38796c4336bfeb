"""IF-MDM: the tasks the trainer runs for each stage.

Stage 1 (`ifmdm_stage1`) trains the motion autoencoder (ifmdm_autoencoder.py) to redraw a
driving frame from its clip's reference frame: L1 + LPIPS + non-saturating GAN with R1.
Generator and discriminator live in one parameter tree and are updated together by one
objective whose parts stop gradients crosswise (see gan_losses), so the generic trainer
needs no GAN-specific code.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from talkjax.models.ifmdm_autoencoder import Discriminator, MotionAutoencoder, gan_losses
from talkjax.nn.perceptual import lpips


class FramePairs:
  """SynthTalk frames paired with their clip's reference frame (the identity image)."""

  def __init__(self, windows):
    self.windows = windows

  def __len__(self):
    return len(self.windows)

  def __getitem__(self, index):
    ex = self.windows[index]
    return {"source": ex["reference"], "driving": ex["frames"][0]}

  def __repr__(self):
    clips = self.windows.clips
    return f"FramePairs({clips.path}, {clips.split!r}, len={len(self)})"


def synthtalk_frame_pairs(config, split: str):
  from talkjax.data.prepare import ensure_synthtalk
  from talkjax.data.synthtalk import SynthTalkWindows
  return FramePairs(SynthTalkWindows(ensure_synthtalk(config.data), split, window=1))


def build_autoencoder(model_config, dtype=None) -> MotionAutoencoder:
  m = model_config
  return MotionAutoencoder(channels=tuple(m.channels), latent=m.latent, directions=m.directions,
                           dtype=dtype)


class Stage1Task:
  """Motion autoencoder training (IF-MDM stage 1)."""

  def __init__(self, config):
    self.config = config
    dtype = jnp.dtype(config.compute_dtype)
    self.generator = build_autoencoder(config.model, dtype)
    self.discriminator = Discriminator(channels=tuple(config.model.disc_channels), dtype=dtype)

  def example_batch(self, batch_size):
    r = self.config.model.resolution
    image = np.zeros((batch_size, r, r, 3), np.float32)
    return {"source": image, "driving": image}

  def batch_axes(self):
    axes = ("batch", "height", "width", None)
    return {"source": axes, "driving": axes}

  def init(self, rng, batch):
    g_rng, d_rng = jax.random.split(rng)
    return {"generator": self.generator.init(g_rng, batch["source"], batch["driving"])["params"],
            "discriminator": self.discriminator.init(d_rng, batch["driving"])["params"]}

  def loss(self, params, batch, rng):
    del rng
    w = self.config.loss
    real = batch["driving"]
    fake = self.generator.apply({"params": params["generator"]}, batch["source"], real)
    fake = fake.astype(jnp.float32)
    l1 = jnp.mean(jnp.abs(fake - real), axis=(1, 2, 3))
    total = w.l1 * l1
    metrics = {"l1": jnp.mean(l1)}
    if w.perceptual > 0:
      perceptual = lpips(fake, real)
      total = total + w.perceptual * perceptual
      metrics["lpips"] = jnp.mean(perceptual)
    if w.gan > 0:
      disc = lambda p, x: self.discriminator.apply({"params": p}, x).astype(jnp.float32)
      g_loss, d_loss = gan_losses(disc, params["discriminator"], real, fake, w.r1)
      total = total + w.gan * g_loss + d_loss
      metrics.update(g_loss=jnp.mean(g_loss), d_loss=jnp.mean(d_loss))
    return total, metrics

  def data_source(self, split):
    return synthtalk_frame_pairs(self.config, "train" if split == "train" else "val")
