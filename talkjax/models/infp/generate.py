"""INFP's generation hook: a portrait + the agent's and the partner's tracks -> motion
(DDIM + classifier-free guidance on the guidance feature) -> rendered frames, chunk by chunk.

The generation layer (talkjax/pipelines/) cuts the two tracks into chunks and calls `chunk`
once per chunk; `Sampler.stream` takes both tracks live (`push(agent, partner_audio=...)`)
and gives each chunk's frames as soon as both tracks hold it (latency: one chunk, plus the
lookahead). The carried state is the last `model.previous` frames of motion, which the
denoiser's temporal attention reads, and the lookahead frames the chunk made but did not
keep. With `sample.crossfade` = L (at most the lookahead; L = the lookahead when the config
does not say), a chunk's first L frames are blended with those frames of the chunk before,
which cover the same moments and continue that chunk's motion: weights (i + 1) / (L + 1) on
the new chunk, so the step across the join is spread over L frames instead of landing on
one (the trained model's median join step was 2.7x the median step inside a chunk without
it; experiments/infp/README.md). The first chunk is given
the portrait's own motion, repeated, as training windows at a clip start are; an anchored
denoiser (`model.anchor`) sees the portrait's motion in every chunk, and with
`model.portrait` the portrait encoder's feature (read once per video, in `start`).

No partner track means a silent partner (the agent talks to a quiet listener). The style
encoder is trained (when `model.style.frames` > 0) but sampling uses the null style: a
reference clip is not yet a request input.

Parameters: {"renderer": stage 1's generator, "guider", "denoiser", "motion_stats",
"speech": wav2vec2 weights (absent for log-mel), "portrait": the portrait encoder (only with
`model.portrait`)}.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from talkjax import stages
from talkjax.audio.frame_features import SAMPLES_PER_FRAME, SpeechFeatures
from talkjax.diffusion import schedules
from talkjax.errors import ConfigError, TalkjaxError
from talkjax.family import Knobs
from talkjax.models.infp.builders import (build_denoiser, build_guider, build_imitation,
                                          build_portrait_encoder, load_stage1,
                                          portrait_resolution)
from talkjax.models.infp.denoiser import sample_chunk
from talkjax.models.infp.portrait import portrait_image
from talkjax.data.motion_codes import identity_stats
from talkjax.nn.motion_renderer import render_frames, to_model_image


@dataclasses.dataclass(frozen=True)
class INFPKnobs(Knobs):
  FAMILY = "INFP"
  steps: int = 25            # DDIM steps
  guidance: float = 1.5      # classifier-free guidance scale on the two tracks (1 = off)

  def validate(self):
    for name, lo, hi in (("steps", 1, 1000), ("guidance", 0.0, 50.0)):
      if not lo <= getattr(self, name) <= hi:
        raise TalkjaxError(f"sampling option {name}={getattr(self, name)} is out of range",
                           fix=f"give {name} a value in {lo}..{hi}")


class INFPGeneration:
  fps = 25
  accepts = frozenset({"partner_audio"})
  requires = frozenset()
  full_precision = (r"^motion_stats/",)

  def __init__(self, config, stage1_config):
    self.config = config
    m = config.model
    self.dit_window, self.previous = int(m.window), int(m.previous)
    lookahead = int(config.sample.get("lookahead", 0))
    if not 0 <= lookahead < self.dit_window:
      raise ConfigError(f"sample.lookahead={lookahead} must be in 0..{self.dit_window - 1}",
                        fix="set sample.lookahead to a few frames (lips lead speech)")
    self.window = self.dit_window - lookahead
    self.audio_lookahead = lookahead * SAMPLES_PER_FRAME
    self.crossfade = int(config.sample.get("crossfade", lookahead))
    if not 0 <= self.crossfade <= lookahead:
      raise ConfigError(f"sample.crossfade={self.crossfade} must be in 0..sample.lookahead "
                        f"({lookahead}): only the lookahead frames overlap the next chunk",
                        fix=f"set sample.crossfade to at most {lookahead} (0: no blending)")
    self.resolution = int(stage1_config.model.resolution)
    self.renderer = build_imitation(stage1_config.model)
    self.guider, self.denoiser = build_guider(config), build_denoiser(config)
    self.portrait, self.portrait_resolution = (build_portrait_encoder(config),
                                               portrait_resolution(config))
    self.speech = SpeechFeatures(m.audio)
    self.audio_context = self.speech.context
    self.alphas = schedules.alphas_cumprod(config.diffusion.steps, config.diffusion.schedule)
    self.linked = {"stage1": stage1_config}

  @classmethod
  def from_config(cls, config, linked=None, *, resolution: int | None = None):
    import ml_collections
    from talkjax import config as cfg
    stage1 = dict(linked or {}).get("stage1")
    if stage1 is None:
      if not config.stage1.config:
        raise TalkjaxError("this stage-2 config names no stage-1 config (stage1.config)",
                           fix="set stage1.config, e.g. infp/synthtalk_tiny_stage1")
      stage1 = cfg.load_config(config.stage1.config)
    if resolution is not None and int(resolution) != int(stage1.model.resolution):
      stage1 = cfg.apply_overrides(ml_collections.ConfigDict(stage1.to_dict()),
                                   [f"model.resolution={int(resolution)}"])
    return cls(config, stage1)

  @classmethod
  def from_workdir(cls, workdir, *, ema: bool = True):
    trained = stages.read_params(workdir, ema=ema)
    if trained.config.family != "infp_stage2":
      raise TalkjaxError(f"this folder holds a {trained.config.family!r} model, not INFP "
                         "stage 2", path=workdir, fix="pass the stage-2 training folder")
    stage1 = load_stage1(trained.config)
    hook = cls(trained.config, stage1.config)
    t = trained.params["trainable"]
    params = {"renderer": stage1.params["trainable"]["generator"], "guider": t["guider"],
              "denoiser": t["denoiser"],
              "motion_stats": trained.params["frozen"]["motion_stats"],
              "speech": hook.speech.load()}
    if hook.portrait is not None:
      params["portrait"] = t["portrait"]
    return hook, params

  def init(self, rng):
    r_rng, g_rng, d_rng, s_rng = jax.random.split(rng, 4)
    image = jnp.zeros((1, self.resolution, self.resolution, 3), jnp.float32)
    d = int(self.config.model.motion_dim)
    feats = jnp.zeros((1, self.dit_window, self.speech.dim), jnp.float32)
    (g, _), guider = self.guider.init_with_output(g_rng, feats, feats)
    params = {}
    feature = None
    if self.portrait is not None:
      r = self.portrait_resolution
      feature, variables = self.portrait.init_with_output(jax.random.fold_in(rng, 5),
                                                          jnp.zeros((1, r, r, 3)))
      params["portrait"] = variables["params"]
    denoiser = self.denoiser.init(d_rng, jnp.zeros((1, self.dit_window, d)),
                                  jnp.zeros((1,), jnp.int32), g,
                                  jnp.zeros((1, self.previous, d)), jnp.zeros((1, 2), bool),
                                  jnp.zeros((1, d)) if self.denoiser.anchor else None, feature)
    return {**params, "renderer": self.renderer.init(r_rng, image, image)["params"],
            "guider": guider["params"], "denoiser": denoiser["params"],
            "motion_stats": identity_stats(d), "speech": self.speech.init(s_rng)}

  def knobs(self, **overrides) -> INFPKnobs:
    return INFPKnobs.build(self.config.sample, **overrides)

  def request_inputs(self, *, emotion=None) -> dict:
    if emotion is not None:
      raise TalkjaxError("INFP takes no emotion label (its behaviour comes from the two "
                         "tracks)", fix="drop it")
    return {}

  def guidance_of(self, params, tracks):
    """Per-frame guidance (B, W, H) of a chunk's two tracks."""
    ctx = self.audio_context
    feats = lambda x: self.speech.chunk(x[:, ctx:], x[:, :ctx], params.get("speech"))
    return self.guider.apply({"params": params["guider"]}, feats(tracks["audio"]),
                             feats(tracks["partner_audio"]))[0]

  def sample_motion(self, params, guide, previous, noise, knobs: INFPKnobs, portrait=None,
                    feature=None):
    """Normalised-space DDIM with CFG on the guidance; raw motion units in and out
    (`portrait`: the portrait's motion (B, D), the anchored denoiser's anchor; `feature`: the
    portrait encoder's reading of it (B, H), with `model.portrait`)."""
    stats = params["motion_stats"]
    norm = lambda x: (x - stats["mean"]) / stats["std"]
    anchor = norm(portrait) if self.denoiser.anchor else None
    x = sample_chunk(self.denoiser, params["denoiser"], guide, norm(previous), anchor, noise,
                     self.alphas, steps=knobs.steps, scale=knobs.guidance,
                     prediction=self.config.diffusion.prediction, portrait=feature)
    return x * stats["std"] + stats["mean"]

  def start(self, params, inputs, knobs):
    """Context: (the renderer's appearance of the portrait, the portrait feature or None)."""
    image = to_model_image(inputs["image"])
    appearance = self.renderer.apply({"params": params["renderer"]}, image,
                                     method=self.renderer.encode_appearance)
    feature = None
    if self.portrait is not None:
      feature = self.portrait.apply({"params": params["portrait"]},
                                    portrait_image(image, self.portrait_resolution))
    portrait = appearance[2]
    b, d = portrait.shape
    carry = {"previous": jnp.repeat(portrait[:, None], self.previous, axis=1),
             "ahead": jnp.zeros((b, self.crossfade, d), portrait.dtype),
             "has_ahead": jnp.zeros((b,), portrait.dtype)}   # the first chunk has none
    return (appearance, feature), carry

  def chunk(self, params, context, carry, tracks, keys, knobs, runtime):
    appearance, feature = context
    shape = (self.dit_window, int(self.config.model.motion_dim))
    noise = jax.vmap(lambda k: jax.random.normal(k, shape))(keys)
    made = self.sample_motion(params, self.guidance_of(params, tracks), carry["previous"],
                              noise, knobs, portrait=appearance[2], feature=feature)
    motion, n = made[:, :self.window], self.crossfade
    if n:
      w = (jnp.arange(1, n + 1, dtype=made.dtype) / (n + 1))[None, :, None]
      w = 1.0 - carry["has_ahead"][:, None, None] * (1.0 - w)     # 1: nothing to blend with
      motion = motion.at[:, :n].set(w * motion[:, :n] + (1.0 - w) * carry["ahead"])
    frames = render_frames(self.renderer, params["renderer"], appearance, motion)
    carry = {"previous": jnp.concatenate([carry["previous"], motion], axis=1)[:, -self.previous:],
             "ahead": made[:, self.window:self.window + n],
             "has_ahead": jnp.ones_like(carry["has_ahead"])}
    return carry, {"motion": motion, "frames": frames}
