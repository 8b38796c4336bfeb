"""IF-MDM: the tasks the trainer runs for each stage.

Stage 1 (`ifmdm_stage1`) trains the motion autoencoder (autoencoder.py) to redraw a
driving frame from its clip's reference frame: L1 + LPIPS + non-saturating GAN with R1.
Generator and discriminator live in one parameter tree and are updated together by one
objective whose parts stop gradients crosswise (see gan_losses), so the generic trainer
needs no GAN-specific code.

Stage 2 (`ifmdm_stage2`) trains the motion DiT (motion.py) on windows of motion codes that
the trained stage-1 encoder reads from every frame (data.py). Motion is normalised per
dimension by the training set's statistics: frozen parameters (`frozen/motion_stats`) that
the task derives from data once (`initial_values`) and that then travel with every
checkpoint.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from talkjax.audio.frame_features import SpeechFeatures
from talkjax.diffusion import learned_variance, objectives, schedules
from talkjax.errors import ConfigError
from talkjax.models.ifmdm.builders import build_autoencoder, build_discriminator, build_motion_dit
from talkjax.data.motion_codes import identity_stats, motion_stats
from talkjax.models.ifmdm.data import SAMPLES_PER_FRAME, MotionWindows, cached_codes, chunked
from talkjax.models.renderer_task import RendererTask


class Stage1Task(RendererTask):
  """Motion autoencoder training (IF-MDM stage 1)."""

  def __init__(self, config):
    dtype = jnp.dtype(config.compute_dtype)
    super().__init__(config, build_autoencoder(config.model, dtype),
                     build_discriminator(config.model, dtype))


class Stage2Task:
  """Audio-to-motion diffusion (IF-MDM stage 2)."""

  def __init__(self, config):
    self.config = config
    self.model = build_motion_dit(config, jnp.dtype(config.compute_dtype))
    self.speech = SpeechFeatures(config.model.audio)
    self.chunked = chunked(config.model.audio)
    if config.loss.velocity > 0 and config.diffusion.prediction == "eps":
      # x0 = (x_t - sqrt(1 - a) eps) / sqrt(a) blows up at high noise: the velocity term of
      # such x0 dominated the loss (gradient norms near 1000 at the start of training).
      raise ConfigError("loss.velocity > 0 needs an x0 or v prediction, not eps",
                        fix="set loss.velocity=0 with diffusion.prediction=eps")
    self.alphas = schedules.alphas_cumprod(config.diffusion.steps, config.diffusion.schedule)
    self._codes = {}

  def codes(self, split: str) -> dict:
    """A split's motion codes, read once per task (statistics and data share them)."""
    if split not in self._codes:
      self._codes[split] = cached_codes(self.config, split)
    return self._codes[split]

  def feature_dim(self) -> int:
    return self.speech.dim

  def example_batch(self, batch_size):
    w, d = self.config.model.window, self.config.model.motion_dim
    vec = np.zeros((batch_size, d), np.float32)
    audio = ((batch_size, self.speech.context + w * SAMPLES_PER_FRAME) if self.chunked
             else (batch_size, w, self.feature_dim()))
    return {"motion": np.zeros((batch_size, w, d), np.float32),
            "audio": np.zeros(audio, np.float32), "hint": vec, "mean": vec, "std": vec}

  def batch_axes(self):
    seq = ("batch", "frames", None)
    vec = ("batch", None)
    return {"motion": seq, "audio": vec if self.chunked else seq, "hint": vec, "mean": vec,
            "std": vec}

  def uses_wav2vec2_weights(self) -> bool:
    return self.chunked and self.speech.kind == "wav2vec2"

  def init(self, rng, batch):
    b, w = batch["motion"].shape[:2]
    feats = jnp.zeros((b, w, self.feature_dim()), jnp.float32)
    d_rng, s_rng = jax.random.split(rng)
    dit = self.model.init(d_rng, batch["motion"], jnp.zeros((b,), jnp.int32), feats,
                          batch["hint"], batch["mean"], batch["std"],
                          jnp.zeros((b, 4), bool))["params"]
    frozen = {"motion_stats": identity_stats(int(self.config.model.motion_dim))}
    if self.uses_wav2vec2_weights():   # the frozen speech encoder runs in the step
      frozen["speech"] = self.speech.init(s_rng)
    return {"trainable": {"dit": dit}, "frozen": frozen}

  def initial_values(self):
    """The training split's motion statistics (from the cached stage-1 motion codes), and
    the converted wav2vec2 when the step computes the speech features."""
    frozen = {"motion_stats": motion_stats(self.codes("train"), int(self.config.model.window))}
    if self.uses_wav2vec2_weights():
      frozen["speech"] = self.speech.load()
    return {"frozen": frozen}

  def speech_features(self, frozen, audio):
    """A batch's per-frame speech features (B, W, 2F): computed here from the windows' raw
    audio exactly as sampling computes a chunk's ("chunked"), or cached ("whole_clip")."""
    if not self.chunked:
      return audio
    ctx = self.speech.context
    feats = self.speech.chunk(audio[:, ctx:], audio[:, :ctx], frozen.get("speech"))
    return jax.lax.stop_gradient(feats)

  @staticmethod
  def normalise(stats, batch):
    z = lambda x: (x - stats["mean"]) / stats["std"]
    return z(batch["motion"]), z(batch["hint"]), z(batch["mean"]), batch["std"] / stats["std"]

  def loss(self, params, batch, rng):
    dc = self.config.diffusion
    x0, hint, mean, std = self.normalise(params["frozen"]["motion_stats"], batch)
    b = x0.shape[0]
    t_rng, n_rng, d_rng = jax.random.split(rng, 3)
    t = jax.random.randint(t_rng, (b,), 0, dc.steps)
    eps = jax.random.normal(n_rng, x0.shape)
    a_t = jnp.asarray(self.alphas, jnp.float32)[t]
    x_t = objectives.q_sample(x0, eps, a_t)
    drop = jax.random.uniform(d_rng, (b, 4)) < dc.condition_dropout
    feats = self.speech_features(params["frozen"], batch["audio"])
    out = self.model.apply({"params": params["trainable"]["dit"]}, x_t, t, feats, hint,
                           mean, std, drop)
    out, var_out = (jnp.split(out, 2, axis=-1) if dc.get("learn_sigma", False) else (out, None))
    err = (out - objectives.target(dc.prediction, x0, eps, a_t)) ** 2
    per_example = jnp.mean(err, axis=(1, 2))
    metrics = {"mse": jnp.mean(per_example)}
    if var_out is not None:   # the hybrid objective: the bound trains the variance only
      vlb = learned_variance.vlb_term(dc.prediction, out, var_out, x0, x_t, t, self.alphas)
      per_example = per_example + float(dc.get("vlb_weight", 0.001)) * vlb
      metrics["vlb"] = jnp.mean(vlb)
    if self.config.loss.velocity > 0:  # smoothness: match frame-to-frame motion (x0 space)
      vel = objectives.velocity_error(dc.prediction, out, x_t, a_t, x0)
      per_example = per_example + self.config.loss.velocity * vel
      metrics["velocity"] = jnp.mean(vel)
    return per_example, metrics

  def data_source(self, split):
    codes = self.codes("train" if split == "train" else "val")
    return MotionWindows(codes, self.config.model.window, self.config.data.stride,
                         name=f"{self.config.data.path}:{split}", audio_context=self.speech.context)
