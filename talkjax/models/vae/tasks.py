"""Training task of the `vae` family: frames -> AutoencoderKL -> the same frames.

Loss per frame: L1 of the reconstruction from a posterior sample + `loss.perceptual` x LPIPS
+ `loss.kl` x the KL divergence to N(0, I) (summed over latent entries, per pixel of the
image, as latent-diffusion VAEs weigh it: small, so latents stay informative). The
parameters sit at trainable/vae; a latent family names this training folder as its VAE
(MEMO: model.weights.vae) and reads them frozen.

`loss.latent_noise` (0 = off): the decoder reads the posterior sample plus Gaussian noise
of a std drawn per frame uniformly in [0, latent_noise], in the scaled units a latent
diffusion model works in (x scaling_factor). A diffusion model's latents are off by about
that much (the tiny MEMO's clean-latent error from pure noise is ~0.07 in mean square,
std ~0.26), and a decoder that never saw such latents turns that error into
high-frequency colour speckles. With the encoder frozen (`optimizer.freeze` over
vae/encoder and vae/quant_conv: experiments/memo/synthtalk_tiny_vae.py:decoder) the
latents stay exactly the same, so a latent model trained on them is unaffected.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from talkjax.errors import ConfigError
from talkjax.nn.perceptual import lpips
from talkjax.nn.vae import AutoencoderKL, VAEConfig


def vae_config(model) -> VAEConfig:
  fields = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in dict(model.vae).items()}
  return VAEConfig(**fields).validate()


class VAETask:
  def __init__(self, config):
    self.config = config
    self.vae_config = vae_config(config.model)
    self.vae = AutoencoderKL(self.vae_config, dtype=jnp.dtype(config.compute_dtype))
    r, f = int(config.model.resolution), self.vae_config.downsample_factor
    if r % f:
      raise ConfigError(f"model.resolution {r} is not a multiple of the VAE's downsampling "
                        f"factor {f}", fix=f"use a multiple of {f}")

  def example_batch(self, batch_size):
    r = int(self.config.model.resolution)
    return {"image": np.zeros((batch_size, r, r, 3), np.float32)}

  def batch_axes(self):
    return {"image": ("batch", "height", "width", None)}

  def init(self, rng, batch):
    return {"trainable": {"vae": self.vae.init(rng, batch["image"])["params"]}, "frozen": {}}

  def loss(self, params, batch, rng):
    w = self.config.loss
    x = batch["image"]
    vae = {"params": params["trainable"]["vae"]}
    mean, logvar = self.vae.apply(vae, x, method=AutoencoderKL.encode)
    mean, logvar = mean.astype(jnp.float32), logvar.astype(jnp.float32)
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mean.shape)
    max_std = float(w.get("latent_noise", 0.0))
    if max_std:   # off: the step and its draws are exactly those of a plain VAE
      z = z + latent_noise(jax.random.fold_in(rng, 1), z.shape, max_std,
                           self.vae_config.scaling_factor)
    out = self.vae.apply(vae, z, method=AutoencoderKL.decode).astype(jnp.float32)
    l1 = jnp.mean(jnp.abs(out - x), axis=(1, 2, 3))
    kl = 0.5 * jnp.sum(mean ** 2 + jnp.exp(logvar) - 1.0 - logvar, axis=(1, 2, 3))
    kl = kl / (x.shape[1] * x.shape[2])
    total = l1 + w.kl * kl
    metrics = {"l1": jnp.mean(l1), "kl": jnp.mean(kl),
               "latent_std": jnp.std(mean)}
    if w.perceptual > 0:
      p = lpips(out, x)
      total = total + w.perceptual * p
      metrics["lpips"] = jnp.mean(p)
    return total, metrics

  def data_source(self, split):
    from talkjax.data.prepare import windows
    return Frames(windows(self.config.data, "train" if split == "train" else "val", window=1,
                          seed=self.config.seed))


def latent_noise(rng, shape, max_std: float, scaling_factor: float):
  """Noise for raw latents `shape` (B, h, w, C): std per frame uniform in [0, max_std]
  in scaled units (raw = scaled / scaling_factor)."""
  level_rng, noise_rng = jax.random.split(rng)
  std = max_std / scaling_factor * jax.random.uniform(level_rng, (shape[0], 1, 1, 1))
  return std * jax.random.normal(noise_rng, shape)


class Frames:
  """Single frames of a window source (SynthTalk, a real build or a mixture): {"image": (H, W, 3) in [-1, 1]}."""

  def __init__(self, windows):
    self.windows = windows

  def __len__(self):
    return len(self.windows)

  def __getitem__(self, index):
    return {"image": self.windows[index]["frames"][0]}

  def __repr__(self):
    return f"Frames({self.windows!r})"
