"""The training task of a warping renderer's stage (IF-MDM stage 1, INFP stage 1): a
generator redraws a driving frame from its clip's source frame; the image objective is the
shared renderer's (talkjax/nn/motion_renderer.py: motion-weighted L1, LPIPS, non-saturating
GAN with R1). Generator and discriminator live in one parameter tree and are updated
together by one objective whose parts stop gradients crosswise (gan_losses), so the generic
trainer needs no GAN-specific code. A family subclasses it with its own two networks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from talkjax.data.frame_pairs import frame_pairs
from talkjax.nn.motion_renderer import reconstruction_losses


class RendererTask:
  def __init__(self, config, generator, discriminator):
    self.config, self.generator, self.discriminator = config, generator, discriminator

  def example_batch(self, batch_size):
    r = self.config.model.resolution
    image = np.zeros((batch_size, r, r, 3), np.float32)
    return {"source": image, "driving": image}

  def batch_axes(self):
    axes = ("batch", "height", "width", None)
    return {"source": axes, "driving": axes}

  def init(self, rng, batch):
    g_rng, d_rng = jax.random.split(rng)
    return {"trainable": {
        "generator": self.generator.init(g_rng, batch["source"], batch["driving"])["params"],
        "discriminator": self.discriminator.init(d_rng, batch["driving"])["params"]},
        "frozen": {}}

  def loss(self, params, batch, rng):
    del rng
    params = params["trainable"]
    real = batch["driving"]
    fake = self.generator.apply({"params": params["generator"]}, batch["source"], real)
    disc = lambda p, x: self.discriminator.apply({"params": p}, x).astype(jnp.float32)
    return reconstruction_losses(fake, real, batch["source"], self.config.loss, disc,
                                 params["discriminator"])

  def data_source(self, split):
    return frame_pairs(self.config, "train" if split == "train" else "val")
