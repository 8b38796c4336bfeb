"""IF-MDM's generation hook: image + audio -> motion (few-step DDIM + CFG) -> rendered frames.

The generation layer (talkjax/pipelines/) cuts long audio into chunks and calls `chunk` once
per chunk (see talkjax/family.py). Each chunk's hint token is the previous chunk's last motion
(the input image's motion for the first), so chunks chain without a seam.

Lookahead (`sample.lookahead` = L frames): the DiT samples its `model.window` frames but a
chunk keeps only the first window - L, so every kept frame has at least L frames of the
speech that follows it in the DiT's view. Lips move before the sound (SynthTalk's mouth leads
by ~60 ms, smoothed over ~20 ms, as real lips do); without it the last frames of every chunk
are sampled without the audio that shapes them, and the probe reads their mouth furthest
from ground truth's. It costs window / (window - L) more DiT work, renders nothing extra,
needs no retraining (the next chunk's hint is the last kept frame, the frame just before it,
as in training), and adds L frames to a stream's latency.

The mean and std tokens are the controls (the paper's section on controllability):
- mean = "image": the input image's motion (keeps its posture); "previous": the previous
  chunk's last motion (the pose wanders); "none": the learned null token (the model picks
  the window's mean itself, as in the paper's main results).
- std = "scale": `std_scale` x the training set's median window std, per dimension;
  "absolute": `std_value` for every dimension, in motion-code units (the paper's knob:
  0.1 calm, 0.3 lively for its codes); "none": the learned null token.

Parameters: {"renderer": stage 1's generator, "dit": stage 2's DiT, "motion_stats": the
training set's motion statistics, "speech": the wav2vec2 weights (absent for log-mel)}.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from talkjax import stages
from talkjax.audio.frame_features import SAMPLES_PER_FRAME, SpeechFeatures
from talkjax.diffusion import guidance, samplers, schedules
from talkjax.errors import ConfigError, TalkjaxError
from talkjax.family import Knobs
from talkjax.models.ifmdm.builders import (build_autoencoder, build_motion_dit, generator_params,
                                           load_stage1)
from talkjax.data.motion_codes import identity_stats
from talkjax.nn.motion_renderer import render_frames, to_model_image

MEAN_MODES = ("image", "previous", "none")
STD_MODES = ("scale", "absolute", "none")


@dataclasses.dataclass(frozen=True)
class IFMDMKnobs(Knobs):
  # Per-example inputs: intensities share a program and a batch.
  RUNTIME = ("std_scale", "std_value")
  FAMILY = "IF-MDM"
  CHOICES = {"mean": MEAN_MODES, "std": STD_MODES}
  steps: int = 10            # DDIM steps
  guidance: float = 2.0      # classifier-free guidance scale on audio (1 = off)
  mean: str = "image"        # "image" | "previous" | "none"
  std: str = "scale"         # "scale" | "absolute" | "none"
  std_scale: float = 1.0     # std="scale": x the training set's median window std
  std_value: float = 0.2     # std="absolute": the std of every motion dimension

  def validate(self):
    if self.mean not in MEAN_MODES:
      raise TalkjaxError(f"mean mode {self.mean!r} is not known", fix=f"use one of {MEAN_MODES}")
    if self.std not in STD_MODES:
      raise TalkjaxError(f"std mode {self.std!r} is not known", fix=f"use one of {STD_MODES}")
    for name, lo, hi in (("steps", 1, 1000), ("guidance", 0.0, 50.0), ("std_scale", 0.0, 10.0),
                         ("std_value", 0.0, 10.0)):
      if not lo <= getattr(self, name) <= hi:
        raise TalkjaxError(f"sampling option {name}={getattr(self, name)} is out of range",
                           fix=f"give {name} a value in {lo}..{hi}")


class IFMDMGeneration:
  """Stage-1 renderer + stage-2 motion DiT, as a generation hook."""

  fps = 25
  accepts = frozenset()      # no partner audio, no emotion label
  requires = frozenset()
  # Kept float32 in a model file (everything else is stored as float16).
  full_precision = (r"^motion_stats/",)

  def __init__(self, config, stage1_config, w2v_config: dict | None = None):
    self.config = config
    self.dit_window = int(config.model.window)
    lookahead = int(config.sample.get("lookahead", 0))
    if not 0 <= lookahead < self.dit_window:
      raise ConfigError(f"sample.lookahead={lookahead} must be in 0..{self.dit_window - 1} "
                        f"(model.window is {self.dit_window})",
                        fix="set sample.lookahead to a few frames (4 covers lips leading speech)")
    self.window = self.dit_window - lookahead          # frames a chunk keeps
    self.audio_lookahead = lookahead * SAMPLES_PER_FRAME
    self.resolution = int(stage1_config.model.resolution)
    self.renderer, self.dit = build_autoencoder(stage1_config.model), build_motion_dit(config)
    self.speech = SpeechFeatures(config.model.audio, w2v_config)
    self.audio_context = self.speech.context
    self.alphas = schedules.alphas_cumprod(config.diffusion.steps, config.diffusion.schedule)
    self.linked = {"stage1": stage1_config}
    if self.speech.kind == "wav2vec2":  # so that a model file needs no wav2vec2 folder
      import ml_collections
      self.linked["wav2vec2"] = ml_collections.ConfigDict(self.speech.w2v_config.to_dict())

  # ---- building ----------------------------------------------------------------------------

  @classmethod
  def from_config(cls, config, linked=None, *, resolution: int | None = None):
    """From the stage-2 config and the stage-1 config (`linked["stage1"]`, or the shipped
    config that `stage1.config` names); `resolution` re-sizes the renderer (benchmarks)."""
    import ml_collections
    from talkjax import config as cfg
    linked = dict(linked or {})
    stage1, edits = linked.get("stage1"), []
    if stage1 is None:
      if not config.stage1.config:
        raise TalkjaxError("this stage-2 config names no stage-1 config (stage1.config)",
                           fix="set stage1.config, e.g. ifmdm/synthtalk_tiny_stage1")
      stage1 = cfg.load_config(config.stage1.config)
      # `stage1.overrides` ("KEY=VALUE;KEY=VALUE") edits the named config, e.g.
      # "model.renderer=fast" to time the light renderer in a paper config's place.
      edits = [e for e in str(config.stage1.get("overrides", "")).split(";") if e.strip()]
    if resolution is not None and int(resolution) != int(stage1.model.resolution):
      edits.append(f"model.resolution={int(resolution)}")
    if edits:
      stage1 = cfg.apply_overrides(ml_collections.ConfigDict(stage1.to_dict()), edits)
    w2v = linked.get("wav2vec2")
    return cls(config, stage1, None if w2v is None else w2v.to_dict())

  @classmethod
  def from_workdir(cls, workdir, *, ema: bool = True):
    """(hook, params) from the stage-2 training folder and the stage-1 folder it names."""
    trained = stages.read_params(workdir, ema=ema)
    if trained.config.family != "ifmdm_stage2":
      raise TalkjaxError(f"this folder holds a {trained.config.family!r} model, not IF-MDM "
                         "stage 2", path=workdir, fix="pass the stage-2 training folder")
    stage1 = load_stage1(trained.config)
    hook = cls(trained.config, stage1.config)
    params = {"renderer": generator_params(stage1), "dit": trained.params["trainable"]["dit"],
              "motion_stats": trained.params["frozen"]["motion_stats"],
              "speech": hook.speech.load()}
    return hook, params

  @classmethod
  def from_legacy_file(cls, data: dict):
    """(hook, params) from a model file of talkjax 0.1's first layout (renderer and DiT as
    top-level keys, motion statistics inside the config)."""
    import json
    import ml_collections
    import numpy as np
    config = ml_collections.ConfigDict(json.loads(data["config"]))
    stage1 = ml_collections.ConfigDict(json.loads(data["stage1_config"]))
    stats = {k: np.asarray(config.model.stats[k], np.float32) for k in ("mean", "std", "window_std")}
    with config.unlocked():
      del config.model["stats"]
    f32 = lambda t: jax.tree.map(lambda x: np.asarray(x, np.float32), t)
    return cls(config, stage1), {"renderer": f32(data["renderer"]), "dit": f32(data["dit"]),
                                 "motion_stats": stats}

  def init(self, rng):
    r_rng, d_rng, s_rng = jax.random.split(rng, 3)
    image = jnp.zeros((1, self.resolution, self.resolution, 3), jnp.float32)
    d = int(self.config.model.motion_dim)
    w = self.dit_window
    feats = jnp.zeros((1, w, self.speech.dim), jnp.float32)
    vec = jnp.zeros((1, d), jnp.float32)
    dit = self.dit.init(d_rng, jnp.zeros((1, w, d)), jnp.zeros((1,), jnp.int32), feats, vec, vec,
                        vec, jnp.zeros((1, 4), bool))["params"]
    return {"renderer": self.renderer.init(r_rng, image, image)["params"], "dit": dit,
            "motion_stats": identity_stats(d), "speech": self.speech.init(s_rng)}

  def knobs(self, **overrides) -> IFMDMKnobs:
    """Sampling settings: the config's `sample.*` with `overrides` (unknown names fail)."""
    return IFMDMKnobs.build(self.config.sample, **overrides)

  def request_inputs(self, *, emotion=None) -> dict:
    if emotion is not None:
      raise TalkjaxError("IF-MDM takes no emotion label", fix="drop it")
    return {}

  # ---- one chunk ---------------------------------------------------------------------------

  def sample_motion(self, params, feats, hint, mean, std, noise, knobs: IFMDMKnobs):
    """Normalised-space DDIM with CFG on audio; inputs/outputs in raw motion units."""
    stats = params["motion_stats"]
    z = lambda x: (x - stats["mean"]) / stats["std"]
    b = feats.shape[0]
    # The controls a knob turns off are dropped (null tokens) in both guidance branches.
    dropped = jnp.asarray([False, False, knobs.mean == "none", knobs.std == "none"])
    cond = {"audio": feats, "drop": jnp.broadcast_to(dropped, (b, 4))}

    def model(x_t, t, c):
      n = x_t.shape[0] // b
      rep = lambda v: jnp.concatenate([v] * n)
      out = self.dit.apply({"params": params["dit"]}, x_t, t, c["audio"], rep(z(hint)),
                           rep(z(mean)), rep(std / stats["std"]), c["drop"])
      return out[..., :x_t.shape[-1]]   # DDIM (eta = 0) needs no learned variance

    def unconditional(c):  # drop the audio only: CFG is on audio
      return {"audio": c["audio"], "drop": c["drop"].at[:, 0].set(True)}

    fn = guidance.guided(model, knobs.guidance, unconditional)
    x = samplers.ddim_sample(lambda x_t, t: fn(x_t, t, cond), noise, self.alphas, knobs.steps,
                             prediction=self.config.diffusion.prediction)
    return x * stats["std"] + stats["mean"]

  def render(self, params, appearance, motion):
    """(B, W, D) motion -> (B, W, R, R, 3) uint8."""
    return render_frames(self.renderer, params["renderer"], appearance, motion)

  def appearance(self, params, image):
    """(features, latent, the image's own motion code, the image) of a portrait batch."""
    return self.renderer.apply({"params": params["renderer"]}, to_model_image(image),
                               method=self.renderer.encode_appearance)

  def start(self, params, inputs, knobs):
    appearance = self.appearance(params, inputs["image"])
    return appearance, (appearance[2], appearance[2])   # carry: (hint, the image's motion)

  def chunk(self, params, context, carry, tracks, keys, knobs, runtime):
    audio, ctx = tracks["audio"], self.audio_context
    feats = self.speech.chunk(audio[:, ctx:], audio[:, :ctx], params.get("speech"))
    shape = (self.dit_window, int(self.config.model.motion_dim))
    noise = jax.vmap(lambda k: jax.random.normal(k, shape))(keys)
    hint, image_motion = carry
    mean = image_motion if knobs.mean == "image" else hint   # ignored when "none"
    if knobs.std == "absolute":
      std = jnp.broadcast_to(runtime["std_value"][:, None], hint.shape)
    else:                                                       # ignored when "none"
      std = runtime["std_scale"][:, None] * params["motion_stats"]["window_std"]
    motion = self.sample_motion(params, feats, hint, mean, std, noise, knobs)[:, :self.window]
    frames = self.render(params, context, motion)
    return (motion[:, -1], image_motion), {"motion": motion, "frames": frames}
