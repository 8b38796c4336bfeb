"""INFP: the tasks the trainer runs for each stage.

Stage 1 (`infp_stage1`) trains head imitation (imitation.py): the portrait redrawn with a
driving frame's motion, read from that frame's masked face; the image objective is the
shared renderer's (talkjax/nn/motion_renderer.py: motion-weighted L1, LPIPS, GAN + R1).

Stage 2 (`infp_stage2`) trains the guider and the denoiser on windows of motion codes that
the trained stage-1 motion encoder reads from every frame of dyadic clips (data.py). Motion
is normalised per dimension by the training set's statistics (frozen parameters, computed
once from the data, saved with every checkpoint), as in IF-MDM. Condition dropout on the
guidance (classifier-free guidance's unconditional branch), the previous motion (the model
also starts a video without it) and the style; `diffusion.previous_noise` noises the
previous motion as chained sampling's own imperfect motion would.

Rollout (`diffusion.rollout`, a fraction of each batch): those windows' previous motion is
the model's own: the chunk before the window is sampled (no gradient, `rollout_steps` DDIM
steps at the sampling guidance) from the recorded motion before it and both tracks, and its
last kept frames become the window's previous motion, exactly as chained sampling hands one
chunk to the next. Training on recorded previous motion only never shows the denoiser its
own errors, which a long chain of chunks compounds (exposure bias).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from talkjax.audio.frame_features import SpeechFeatures
from talkjax.data.motion_codes import SAMPLES_PER_FRAME, identity_stats, motion_stats
from talkjax.diffusion import objectives, schedules
from talkjax.errors import ConfigError
from talkjax.models.infp.builders import (build_denoiser, build_discriminator, build_guider,
                                          build_imitation, build_portrait_encoder,
                                          build_style_encoder, portrait_resolution)
from talkjax.models.infp.data import ANCHOR_FRAMES, DyadicWindows, cached_codes
from talkjax.models.infp.denoiser import sample_chunk
from talkjax.models.renderer_task import RendererTask


class Stage1Task(RendererTask):
  """Motion-based head imitation (INFP stage 1)."""

  def __init__(self, config):
    dtype = jnp.dtype(config.compute_dtype)
    super().__init__(config, build_imitation(config.model, dtype),
                     build_discriminator(config.model, dtype))


class Stage2Task:
  """Audio-guided motion generation (INFP stage 2)."""

  def __init__(self, config):
    self.config = config
    dtype = jnp.dtype(config.compute_dtype)
    self.guider = build_guider(config, dtype)
    self.denoiser = build_denoiser(config, dtype)
    self.style = build_style_encoder(config, dtype)
    self.portrait = build_portrait_encoder(config, dtype)
    self.anchored = self.denoiser.anchor
    self.anchor_frame = str(config.diffusion.get("anchor_frame", "first"))
    if self.anchor_frame not in ANCHOR_FRAMES:
      raise ConfigError(f"diffusion.anchor_frame={self.anchor_frame!r} is not one of "
                        f"{ANCHOR_FRAMES}", fix="first: the clip's first frame; any: any frame "
                        "of the clip")
    self.speech = SpeechFeatures(config.model.audio)
    self.alphas = schedules.alphas_cumprod(config.diffusion.steps, config.diffusion.schedule)
    self.rollout = float(config.diffusion.get("rollout", 0.0))
    if not 0.0 <= self.rollout <= 1.0:
      raise ConfigError(f"diffusion.rollout={self.rollout} is a fraction of each batch",
                        fix="set diffusion.rollout in 0..1 (0: recorded previous motion only)")
    # the frames a sampling chunk keeps (generate.py): the chunk before a window starts there
    self.keep = int(config.model.window) - int(config.sample.get("lookahead", 0))
    self._codes = {}

  def codes(self, split: str) -> dict:
    if split not in self._codes:
      self._codes[split] = cached_codes(self.config, split)
    return self._codes[split]

  def example_batch(self, batch_size):
    m = self.config.model
    w, p, d = int(m.window), int(m.previous), int(m.motion_dim)
    track = np.zeros((batch_size, self.speech.context + w * SAMPLES_PER_FRAME), np.float32)
    batch = {"motion": np.zeros((batch_size, w, d), np.float32),
             "previous": np.zeros((batch_size, p, d), np.float32),
             "audio": track, "partner_audio": track}
    if self.anchored:
      batch["anchor"] = np.zeros((batch_size, d), np.float32)
    if self.style is not None:
      batch["style"] = np.zeros((batch_size, int(m.style.frames), d), np.float32)
    if self.portrait is not None:
      r = portrait_resolution(self.config)
      batch["portrait"] = np.zeros((batch_size, r, r, 3), np.float32)
    if self.rollout:
      batch.update(lead_previous=batch["previous"], lead_audio=track, lead_partner_audio=track,
                   lead_valid=np.zeros((batch_size,), np.float32))
    return batch

  def batch_axes(self):
    seq, track = ("batch", "frames", None), ("batch", None)
    axes = {"motion": seq, "previous": seq, "audio": track, "partner_audio": track}
    if self.anchored:
      axes["anchor"] = track
    if self.style is not None:
      axes["style"] = seq
    if self.portrait is not None:
      axes["portrait"] = ("batch", None, None, None)
    if self.rollout:
      axes.update(lead_previous=seq, lead_audio=track, lead_partner_audio=track,
                  lead_valid=("batch",))
    return axes

  def init(self, rng, batch):
    b, w = batch["motion"].shape[:2]
    feats = jnp.zeros((b, w, self.speech.dim), jnp.float32)
    g_rng, d_rng, s_rng, a_rng = jax.random.split(rng, 4)
    (guidance, _), guider = self.guider.init_with_output(g_rng, feats, feats)
    trainable = {"guider": guider["params"]}
    portrait = None
    if self.portrait is not None:
      portrait, variables = self.portrait.init_with_output(jax.random.fold_in(rng, 5),
                                                           batch["portrait"])
      trainable["portrait"] = variables["params"]
    trainable["denoiser"] = self.denoiser.init(
        d_rng, batch["motion"], jnp.zeros((b,), jnp.int32), guidance, batch["previous"],
        jnp.zeros((b, 2), bool), batch.get("anchor"), portrait)["params"]
    if self.style is not None:
      trainable["style"] = self.style.init(s_rng, batch["style"])["params"]
    frozen = {"motion_stats": identity_stats(int(self.config.model.motion_dim))}
    if self.speech.kind == "wav2vec2":
      frozen["speech"] = self.speech.init(a_rng)
    return {"trainable": trainable, "frozen": frozen}

  def initial_values(self):
    frozen = {"motion_stats": motion_stats(self.codes("train"), int(self.config.model.window))}
    if self.speech.kind == "wav2vec2":
      frozen["speech"] = self.speech.load()
    return {"frozen": frozen}

  def features(self, frozen, track):
    ctx = self.speech.context
    return jax.lax.stop_gradient(self.speech.chunk(track[:, ctx:], track[:, :ctx],
                                                   frozen.get("speech")))

  def guidance(self, params, agent, partner, style_motion, drop_style):
    """Per-frame guidance from the two tracks' raw audio (and a style clip's motion)."""
    frozen, trainable = params["frozen"], params["trainable"]
    style = None
    if self.style is not None and style_motion is not None:
      style = self.style.apply({"params": trainable["style"]}, style_motion)
      null = trainable["guider"]["null_style"]
      style = jnp.where(drop_style[:, None], null[None].astype(style.dtype), style)
    return self.guider.apply({"params": trainable["guider"]}, self.features(frozen, agent),
                             self.features(frozen, partner), style)[0]

  def portrait_feature(self, params, batch):
    if self.portrait is None:
      return None
    return self.portrait.apply({"params": params["trainable"]["portrait"]}, batch["portrait"])

  @staticmethod
  def normalise(stats, x):
    return (x - stats["mean"]) / stats["std"]

  def loss(self, params, batch, rng):
    dc = self.config.diffusion
    stats = params["frozen"]["motion_stats"]
    x0, previous = self.normalise(stats, batch["motion"]), self.normalise(stats, batch["previous"])
    anchor = self.normalise(stats, batch["anchor"]) if self.anchored else None
    portrait = self.portrait_feature(params, batch)
    if self.rollout:
      previous = self.rolled_out(params, batch, previous, anchor, portrait,
                                 jax.random.fold_in(rng, 2))
    if float(dc.get("previous_noise", 0.0)) > 0:
      # Sampling chains chunks on generated motion, not ground truth: a previous motion
      # noised by a random amount per window (std up to previous_noise, normalised units)
      # teaches the denoiser to lean on the tracks and the anchor when what came before
      # is off, instead of copying it forward (a chain otherwise locks into a mouth
      # that no longer opens for speech).
      s_rng, e_rng = jax.random.split(jax.random.fold_in(rng, 1))
      scale = float(dc.previous_noise) * jax.random.uniform(s_rng, (previous.shape[0], 1, 1))
      previous = previous + scale * jax.random.normal(e_rng, previous.shape)
    b = x0.shape[0]
    t_rng, n_rng, d_rng = jax.random.split(rng, 3)
    t = jax.random.randint(t_rng, (b,), 0, dc.steps)
    eps = jax.random.normal(n_rng, x0.shape)
    a_t = jnp.asarray(self.alphas, jnp.float32)[t]
    x_t = objectives.q_sample(x0, eps, a_t)
    drop = jax.random.uniform(d_rng, (b, 3)) < jnp.asarray(
        [dc.condition_dropout, dc.previous_dropout, dc.condition_dropout])
    guidance = self.guidance(params, batch["audio"], batch["partner_audio"],
                             batch.get("style"), drop[:, 2])
    out = self.denoiser.apply({"params": params["trainable"]["denoiser"]}, x_t, t, guidance,
                              previous, drop[:, :2], anchor, portrait)
    per_example = jnp.mean((out - objectives.target(dc.prediction, x0, eps, a_t)) ** 2, axis=(1, 2))
    metrics = {"mse": jnp.mean(per_example)}
    if self.config.loss.velocity > 0:   # smoothness: frame-to-frame motion (x0 space)
      vel = objectives.velocity_error(dc.prediction, out, x_t, a_t, x0)
      per_example = per_example + self.config.loss.velocity * vel
      metrics["velocity"] = jnp.mean(vel)
    return per_example, metrics

  def rolled_out(self, params, batch, previous, anchor, portrait, rng):
    """`previous` (normalised) with the first round(rollout * B) windows' replaced by the
    last frames the model itself keeps of the chunk before (where the clip has one)."""
    b, p = previous.shape[:2]
    k = max(1, round(self.rollout * b))
    stats, take = params["frozen"]["motion_stats"], lambda x: x[:k]
    guide = self.guidance(params, take(batch["lead_audio"]), take(batch["lead_partner_audio"]),
                          None, None)
    noise = jax.random.normal(rng, (k,) + batch["motion"].shape[1:])
    lead = sample_chunk(self.denoiser, params["trainable"]["denoiser"], guide,
                        self.normalise(stats, take(batch["lead_previous"])),
                        None if anchor is None else take(anchor), noise, self.alphas,
                        steps=int(self.config.diffusion.rollout_steps),
                        scale=float(self.config.sample.guidance),
                        prediction=self.config.diffusion.prediction,
                        portrait=None if portrait is None else jax.lax.stop_gradient(take(portrait)))
    lead = jax.lax.stop_gradient(lead[:, self.keep - p:self.keep])
    valid = take(batch["lead_valid"])[:, None, None] > 0
    return jnp.concatenate([jnp.where(valid, lead, previous[:k]), previous[k:]])

  def data_source(self, split):
    m = self.config.model
    codes = self.codes("train" if split == "train" else "val")
    return DyadicWindows(codes, window=int(m.window), previous=int(m.previous),
                         stride=int(self.config.data.stride), audio_context=self.speech.context,
                         style_frames=int(m.style.frames), anchor=self.anchored,
                         anchor_frame=self.anchor_frame,
                         lead=self.keep if self.rollout else 0,
                         seed=int(self.config.seed),
                         name=f"{self.config.data.path}:{split}")
