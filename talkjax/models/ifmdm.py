"""IF-MDM: the tasks the trainer runs for each stage.

Stage 1 (`ifmdm_stage1`) trains the motion autoencoder (ifmdm_autoencoder.py) to redraw a
driving frame from its clip's reference frame: L1 + LPIPS + non-saturating GAN with R1.
Generator and discriminator live in one parameter tree and are updated together by one
objective whose parts stop gradients crosswise (see gan_losses), so the generic trainer
needs no GAN-specific code.

Stage 2 (`ifmdm_stage2`) trains the motion DiT (ifmdm_motion.py) on windows of motion codes
that the trained stage-1 encoder reads from every frame (ifmdm_data.py). Motion is
normalised per dimension by the training set's statistics, which are written into the
config (`model.stats`) and so travel with every checkpoint.
"""

from __future__ import annotations

import pathlib
from typing import NamedTuple

import jax
import ml_collections
import jax.numpy as jnp
import numpy as np

from talkjax.diffusion import objectives, schedules
from talkjax.errors import ConfigError, TalkjaxError
from talkjax.models.ifmdm_autoencoder import Discriminator, MotionAutoencoder, gan_losses
from talkjax.nn.perceptual import lpips


class FramePairs:
  """(source, driving) frame pairs from SynthTalk clips.

  Far pairs use the clip's first frame (the identity image, as at sampling time) as the
  source: they teach head pose. Near pairs take the source `gap` frames before the driving
  frame: over ~0.1 s the head barely moves while lips and eyelids do, so these pairs put
  the reconstruction error where the fast articulators are. `near` is their share.
  """

  def __init__(self, windows, near: float = 0.0):
    self.windows, self.near = windows, near

  def __len__(self):
    return len(self.windows)

  def __getitem__(self, index):
    ex = self.windows[index]
    # A fixed low-discrepancy pattern, so the share is exact and deterministic in index.
    is_near = (index * 0.6180339887) % 1.0 < self.near
    return {"source": ex["frames"][0] if is_near else ex["reference"], "driving": ex["frames"][-1]}

  def __repr__(self):
    clips = self.windows.clips
    return f"FramePairs({clips.path}, {clips.split!r}, near={self.near}, len={len(self)})"


def synthtalk_frame_pairs(config, split: str):
  from talkjax.data.prepare import ensure_synthtalk
  from talkjax.data.synthtalk import SynthTalkWindows
  d = config.data
  windows = SynthTalkWindows(ensure_synthtalk(d), split, window=d.near_gap + 1)
  return FramePairs(windows, near=d.near_pairs)


def build_autoencoder(model_config, dtype=None) -> MotionAutoencoder:
  m = model_config
  if m.latent < m.directions:
    raise ConfigError(f"model.latent ({m.latent}) must be >= model.directions ({m.directions}): "
                      "the directions are orthonormal vectors in the latent space",
                      fix=f"set model.latent to at least {m.directions}")
  scale = 2 ** (len(m.channels) + 1)  # one stride-2 block per channel entry, >= 2x2 at the end
  if not 64 <= m.resolution <= 512 or m.resolution % scale:
    raise ConfigError(f"model.resolution {m.resolution} must be in 64..512 and a multiple of "
                      f"{scale} (2 ** (len(model.channels) + 1))",
                      fix="use 64, 128, 256 or 512 (or change model.channels)")
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
    # Pixels that differ between the two frames (an opening mouth, a turned head) weigh
    # more: most of a talking face is static, and a plain L1 mostly rewards copying it.
    moving = jnp.mean(jnp.abs(real - batch["source"]), axis=-1, keepdims=True)
    l1 = jnp.mean((1 + w.motion_weight * moving) * jnp.abs(fake - real), axis=(1, 2, 3))
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


class Stage1(NamedTuple):
  workdir: pathlib.Path
  step: int
  config: ml_collections.ConfigDict
  model: MotionAutoencoder
  params: dict          # the generator's (no discriminator)


def load_stage1(config) -> Stage1:
  """The trained stage-1 model of `config.stage1.workdir`."""
  from talkjax.train.restore import load_trained
  workdir = pathlib.Path(config.stage1.workdir).expanduser()
  if not (workdir / "checkpoints").is_dir():
    raise TalkjaxError(
        "stage 2 needs the trained stage-1 model, and this folder has no checkpoints",
        path=workdir, fix=f"train stage 1 first (talkjax train --config {config.stage1.config} "
                          f"--workdir {workdir}) or set stage1.workdir to its folder")
  s1_config, params, step = load_trained(workdir)
  if s1_config.family != "ifmdm_stage1":
    raise TalkjaxError(f"stage1.workdir holds a {s1_config.family!r} model, not IF-MDM stage 1",
                       path=workdir, fix="point stage1.workdir at a stage-1 training folder")
  if int(s1_config.model.directions) != int(config.model.motion_dim):
    raise TalkjaxError(f"stage 1 has {s1_config.model.directions} motion directions but "
                       f"model.motion_dim is {config.model.motion_dim}", path=workdir,
                       fix=f"set model.motion_dim={s1_config.model.directions}")
  return Stage1(workdir, step, s1_config, build_autoencoder(s1_config.model), params["generator"])


def build_motion_dit(config, dtype=None):
  from talkjax.models.ifmdm_motion import MotionDiT
  m = config.model
  return MotionDiT(window=m.window, hidden=m.hidden, layers=m.layers, heads=m.heads,
                   mlp_ratio=m.mlp_ratio, dtype=dtype, remat=bool(config.train.remat))


def motion_stats(config):
  """(mean, std, window_std) as float32 arrays; identity normalisation before data is seen."""
  d = int(config.model.motion_dim)
  st = config.model.stats
  if not len(st.mean):
    return np.zeros(d, np.float32), np.ones(d, np.float32), np.ones(d, np.float32)
  return tuple(np.asarray(v, np.float32) for v in (st.mean, st.std, st.window_std))


class Stage2Task:
  """Audio-to-motion diffusion (IF-MDM stage 2)."""

  def __init__(self, config):
    self.config = config
    self.model = build_motion_dit(config, jnp.dtype(config.compute_dtype))
    self.alphas = schedules.alphas_cumprod(config.diffusion.steps, config.diffusion.schedule)

  def feature_dim(self) -> int:
    from talkjax.models.ifmdm_audio import feature_dim
    return feature_dim(self.config.model.audio)

  def example_batch(self, batch_size):
    w, d = self.config.model.window, self.config.model.motion_dim
    vec = np.zeros((batch_size, d), np.float32)
    return {"motion": np.zeros((batch_size, w, d), np.float32),
            "audio": np.zeros((batch_size, w, self.feature_dim()), np.float32),
            "hint": vec, "mean": vec, "std": vec}

  def batch_axes(self):
    seq = ("batch", "frames", None)
    vec = ("batch", None)
    return {"motion": seq, "audio": seq, "hint": vec, "mean": vec, "std": vec}

  def init(self, rng, batch):
    b = batch["motion"].shape[0]
    return self.model.init(rng, batch["motion"], jnp.zeros((b,), jnp.int32), batch["audio"],
                           batch["hint"], batch["mean"], batch["std"],
                           jnp.zeros((b, 4), bool))["params"]

  def normalise(self, batch):
    mean, std, _ = motion_stats(self.config)
    z = lambda x: (x - mean) / std
    return z(batch["motion"]), z(batch["hint"]), z(batch["mean"]), batch["std"] / std

  def loss(self, params, batch, rng):
    dc = self.config.diffusion
    x0, hint, mean, std = self.normalise(batch)
    b = x0.shape[0]
    t_rng, n_rng, d_rng = jax.random.split(rng, 3)
    t = jax.random.randint(t_rng, (b,), 0, dc.steps)
    eps = jax.random.normal(n_rng, x0.shape)
    a_t = jnp.asarray(self.alphas, jnp.float32)[t]
    x_t = objectives.q_sample(x0, eps, a_t)
    drop = jax.random.uniform(d_rng, (b, 4)) < dc.condition_dropout
    out = self.model.apply({"params": params}, x_t, t, batch["audio"], hint, mean, std, drop)
    err = (out - objectives.target(dc.prediction, x0, eps, a_t)) ** 2
    per_example = jnp.mean(err, axis=(1, 2))
    metrics = {"mse": jnp.mean(per_example)}
    if self.config.loss.velocity > 0:  # smoothness: match frame-to-frame motion (x0 space)
      x0_hat, _ = objectives.to_x0_eps(dc.prediction, out, x_t, a_t)
      vel = jnp.mean((jnp.diff(x0_hat, axis=1) - jnp.diff(x0, axis=1)) ** 2, axis=(1, 2))
      per_example = per_example + self.config.loss.velocity * vel
      metrics["velocity"] = jnp.mean(vel)
    return per_example, metrics

  def data_source(self, split):
    from talkjax.models.ifmdm_data import MotionWindows, cached_codes
    from talkjax.models.ifmdm_data import motion_stats as data_stats
    train_codes = cached_codes(self.config, "train")
    self.config.model.stats.update(data_stats(train_codes, self.config.model.window))
    codes = train_codes if split == "train" else cached_codes(self.config, "val")
    return MotionWindows(codes, self.config.model.window, self.config.data.stride,
                         name=f"{self.config.data.path}:{split}")
