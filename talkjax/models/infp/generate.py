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

No partner track means a silent partner (the agent talks to a quiet listener).

Motion style (with `model.style.frames` = S > 0): a request may give a reference clip
(`style_video`, `talkjax sample --style-video`); `start` reads its S frames' motion codes
with stage 1's motion encoder — what training's style windows hold, read by the same
encoder from every frame of a clip — and the style encoder turns them into the style
vector both of the guider's banks are modulated by, once per video. A request without one
gets the learned null style (what training's style dropout teaches). A model trained
without a style encoder refuses a reference clip.

Parameters: {"renderer": stage 1's generator, "guider", "denoiser", "motion_stats",
"speech": wav2vec2 weights (absent for log-mel), "portrait": the portrait encoder (only with
`model.portrait`), "style": the style encoder (only with `model.style.frames`)}.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from talkjax import stages
from talkjax.audio.frame_features import SAMPLES_PER_FRAME, SpeechFeatures
from talkjax.diffusion import schedules
from talkjax.errors import ConfigError, TalkjaxError
from talkjax.family import Knobs
from talkjax.models.infp.builders import (build_denoiser, build_guider, build_imitation,
                                          build_portrait_encoder, build_style_encoder,
                                          load_stage1, portrait_resolution)
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
    self.style = build_style_encoder(config)
    self.style_frames = int(m.style.frames) if self.style is not None else 0
    self.accepts = frozenset({"partner_audio"}
                             | ({"style_video"} if self.style is not None else set()))
    self.refusals = {} if self.style is not None else {"style_video": (
        "this model was trained without a style encoder (model.style.frames=0): drop the "
        "reference clip, or sample a stage 2 trained with model.style.frames > 0")}
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
    for part in ("portrait", "style"):
      if getattr(hook, part) is not None:
        params[part] = t[part]
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
    if self.style is not None:
      params["style"] = self.style.init(jax.random.fold_in(rng, 6),
                                        jnp.zeros((1, self.style_frames, d)))["params"]
    return {**params, "renderer": self.renderer.init(r_rng, image, image)["params"],
            "guider": guider["params"], "denoiser": denoiser["params"],
            "motion_stats": identity_stats(d), "speech": self.speech.init(s_rng)}

  def knobs(self, **overrides) -> INFPKnobs:
    return INFPKnobs.build(self.config.sample, **overrides)

  def request_inputs(self, *, emotion=None, style_video=None) -> dict:
    """With a style encoder: {"style_video": uint8 (S, R, R, 3), "has_style": 0 or 1}
    (zeros and 0 without a reference clip: the null style)."""
    if emotion is not None:
      raise TalkjaxError("INFP takes no emotion label (its behaviour comes from the two "
                         "tracks)", fix="drop it")
    if self.style is None:
      if style_video is not None:
        raise TalkjaxError("this INFP model takes no style video", fix=self.refusals["style_video"])
      return {}
    shape = (self.style_frames, self.resolution, self.resolution, 3)
    if style_video is None:
      return {"style_video": np.zeros(shape, np.uint8), "has_style": np.float32(0.0)}
    clip = np.asarray(style_video)
    if clip.shape != shape or clip.dtype != np.uint8:
      raise TalkjaxError(f"the reference clip must be uint8 frames {shape}, got {clip.dtype} "
                         f"{clip.shape}", fix="load it with "
                         "talkjax.pipelines.inputs.load_reference_clip")
    return {"style_video": clip, "has_style": np.float32(1.0)}

  def style_of(self, params, inputs):
    """The style vector (B, H) of each example's reference clip (the null style where it
    has none), or None without a style encoder."""
    if self.style is None:
      return None
    clip, given = inputs["style_video"], inputs["has_style"][:, None] > 0
    b, s = clip.shape[:2]
    null_style = params["guider"]["null_style"].astype(jnp.float32)
    null = jnp.broadcast_to(null_style, (b,) + null_style.shape)

    def read():
      codes = self.renderer.apply({"params": params["renderer"]},
                                  to_model_image(clip.reshape((b * s,) + clip.shape[2:])),
                                  method=self.renderer.encode_motion)
      style = self.style.apply({"params": params["style"]}, codes.reshape(b, s, -1))
      return jnp.where(given, style.astype(jnp.float32), null)
    # a batch without a reference clip skips reading S frames of zeros
    return jax.lax.cond(jnp.any(given), read, lambda: null)

  def guidance_of(self, params, tracks, style=None):
    """Per-frame guidance (B, W, H) of a chunk's two tracks (and the video's style)."""
    ctx = self.audio_context
    feats = lambda x: self.speech.chunk(x[:, ctx:], x[:, :ctx], params.get("speech"))
    return self.guider.apply({"params": params["guider"]}, feats(tracks["audio"]),
                             feats(tracks["partner_audio"]), style)[0]

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
    """Context: (the renderer's appearance of the portrait, the portrait feature or None,
    the style vector or None)."""
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
    return (appearance, feature, self.style_of(params, inputs)), carry

  def chunk(self, params, context, carry, tracks, keys, knobs, runtime):
    appearance, feature, style = context
    shape = (self.dit_window, int(self.config.model.motion_dim))
    noise = jax.vmap(lambda k: jax.random.normal(k, shape))(keys)
    made = self.sample_motion(params, self.guidance_of(params, tracks, style), carry["previous"],
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
