"""MEMO's generation hook: portrait + speech -> clip after clip of latent video diffusion.

The generation layer (talkjax/pipelines/) cuts the audio into clips of `window` frames
(model.clip.frames) and calls `chunk` once per clip, carrying:
- the past latents: the last P frames generated, decoded and re-encoded by the VAE as the
  release does (copies of the portrait's latent for the first clip);
- the memory of every motion module, for the guided and the unguided branch: empty for a
  new audio, then each clip folds its past frames in (`Memo.remember`) before denoising,
  so the state carries the whole video at a fixed size.
Per clip: the ReferenceNet runs once on [portrait; past] (guided with the identity tokens,
unguided with a zero embedding's), then `steps` flow-matching Euler steps (the release's
FlowMatchEulerDiscreteScheduler levels) under lax.scan, the two guidance branches batched
in one DiffusionNet call: v = v_u + guidance (v_c - v_u), where the unguided branch has a
zero embedding's image tokens, zero audio tokens, the null emotion and no reference keys
in attn1 (the release's). The VAE decodes the clip.

Emotion: the request's `emotion` (a MEMO class name) for every clip; when none is given,
each clip's emotion is read from the audio by the classifier `model.emotion.classifier`
names (an `audio_emotion` training folder): from the classifier's window (3 s) centred on
the clip, the zeros padded before and after the audio left out (a streaming-friendly
reading of MEMO's 3 s / 1 s windows, which need the whole audio first: deviation,
labelled). Without a classifier, the null label (the model is trained with 30 % null
labels per module).
Identity: the learned encoder of the portrait (tiny configs), or, with
model.identity.encoder = "given" (the release), the portrait's face embedding from the
recogniser model.identity.recognizer names, computed once per request on the host
(`portrait_inputs`, talkjax/models/memo/identity.py).
Speech: log-mel (tiny configs) or the converted wav2vec2 (params["speech"]), per clip
(talkjax/models/memo/speech.py).
Deviation, labelled: the generation layer runs at 25 fps (the release's inference
config says 30).
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from talkjax import stages
from talkjax.audio.emotion import EMOTIONS, NULL_EMOTION, EmotionReader, emotion_index
from talkjax.diffusion import guidance, samplers
from talkjax.errors import ConfigError, TalkjaxError
from talkjax.family import Knobs
from talkjax.models.memo.identity import FaceEmbedder
from talkjax.models.memo.speech import MemoSpeech
from talkjax.models.memo.tasks import MemoTask
from talkjax.nn.vae import AutoencoderKL, unscale_latents

SAMPLES_PER_FRAME = 640    # 16 kHz at 25 fps, the generation layer's rate
READ_EMOTION = -1          # a request's emotion label: read it from the audio


@dataclasses.dataclass(frozen=True)
class MemoKnobs(Knobs):
  FAMILY = "MEMO"
  steps: int = 20            # flow-matching Euler steps
  guidance: float = 3.5      # one scale for image, audio and emotion together (1 = off)
  vae_chunk: int = 8         # frames the VAE decodes / re-encodes at once (bounds memory)

  def validate(self):
    for name, lo, hi in (("steps", 1, 1000), ("guidance", 0.0, 50.0), ("vae_chunk", 1, 4096)):
      if not lo <= getattr(self, name) <= hi:
        raise TalkjaxError(f"sampling option {name}={getattr(self, name)} is out of range",
                           fix=f"give {name} a value in {lo}..{hi}")


def to_pixels(image):
  image = jnp.asarray(image)
  return (image.astype(jnp.float32) / 127.5 - 1.0 if image.dtype == jnp.uint8
          else image.astype(jnp.float32))


class MemoGeneration:
  accepts = frozenset({"emotion"})
  requires = frozenset()
  emotions = tuple(EMOTIONS)
  # the emotion classifier's few thousand weights stay float32 in a model file, so a
  # label read from a model file is the one read from the training folder
  full_precision = (r"^emotion/",)

  def __init__(self, config, emotion_config=None, w2v_config=None, emotion_reader=None):
    """`emotion_config`: the classifier's config when it comes with the model (a model
    file's `linked["emotion"]`); otherwise read from the folder `model.emotion.classifier`
    names. Its parameters travel with the model's, as params["emotion"]. `w2v_config`
    likewise for the wav2vec2 speech encoder (params["speech"]). `emotion_reader`: another
    reader of the same interface (the release's emotion2vec + classifier), used instead."""
    self.config = config
    self.linked = {}
    self.task = MemoTask(config)
    self.memo = self.task.memo
    m = config.model
    if int(config.sample.get("fps", 25)) != 25:
      raise ConfigError(f"sample.fps={config.sample.fps}: the generation layer runs at 25 fps",
                        fix="set sample.fps=25")
    self.fps = 25
    self.window = int(m.clip.frames)
    self.past = int(m.clip.past)
    self.resolution = int(m.resolution)
    self.speech = MemoSpeech(m.audio, self.fps,
                             None if w2v_config is None else dict(w2v_config))
    self.speech_context = self.speech.margin * SAMPLES_PER_FRAME
    if self.speech.kind == "wav2vec2":   # a model file then needs no wav2vec2 folder
      import ml_collections
      self.linked["wav2vec2"] = ml_collections.ConfigDict(self.speech.w2v_config.to_dict())
    self.classifier = m.get("emotion", {}).get("classifier") or ""
    if emotion_config is None and self.classifier:
      emotion_config = stages.checkpoint_config(self._classifier_folder())[0]
    self.emotion_reader = emotion_reader
    if emotion_reader is None and emotion_config is not None:
      self.emotion_reader = EmotionReader(emotion_config, path=self.classifier or None)
      self.linked["emotion"] = emotion_config
    reach = 0
    if self.emotion_reader is not None:   # the classifier's window, centred on the clip
      reach = -(-(self.emotion_reader.window - self.window * SAMPLES_PER_FRAME) // 2)
    self.audio_context = self.audio_lookahead = max(self.speech_context, reach)
    if not (self.memo.config.audio and self.memo.config.memory_on):
      raise ConfigError("this config trains MEMO without its audio or memory modules "
                        f"(model.modules={self.memo.config.modules}): a stage-1 model "
                        "does not generate talking videos", fix="sample a stage-2 model")
    # "given" identity (the release's): the portrait's embedding from the face recogniser
    # model.identity.recognizer names, computed per request (`portrait_inputs`); without
    # one only benchmarks run (their identity is zeros), a request is refused
    self.given_identity = not self.task.learned_identity
    recognizer = m.identity.get("recognizer", "") if self.given_identity else ""
    self.face = FaceEmbedder(recognizer, self.memo.config.identity_dim) if recognizer else None

  # ---- building ---------------------------------------------------------------------

  def _classifier_folder(self) -> pathlib.Path:
    folder = pathlib.Path(self.classifier).expanduser()
    if not (folder / "checkpoints").is_dir():
      raise ConfigError(f"model.emotion.classifier names {self.classifier}, which holds no "
                        "trained audio emotion classifier",
                        fix="train it (talkjax train --config memo/synthtalk_tiny_emotion "
                            f"--workdir {self.classifier}) or sample with the null emotion: "
                            "--set model.emotion.classifier=")
    return folder

  def _with_classifier(self, params):
    """params with the trained classifier's weights (from its folder) as params["emotion"]."""
    if self.emotion_reader is not None:
      params["emotion"] = EmotionReader.from_workdir(self._classifier_folder())[1]
    return params

  @classmethod
  def from_config(cls, config, linked=None, *, resolution: int | None = None):
    from talkjax.config import with_resolution
    linked = linked or {}
    w2v = linked.get("wav2vec2")
    return cls(with_resolution(config, resolution), linked.get("emotion"),
               None if w2v is None else w2v.to_dict())

  @classmethod
  def from_workdir(cls, workdir, *, ema: bool = True):
    trained = stages.read_params(workdir, ema=ema)
    if trained.config.family != "memo":
      raise TalkjaxError(f"this folder holds a {trained.config.family!r} model, not MEMO",
                         path=workdir, fix="pass a MEMO training folder")
    hook = cls(trained.config)
    return hook, hook._with_classifier(hook._with_speech({
        "memo": trained.params["trainable"], "vae": trained.params["frozen"]["vae"]}))

  @classmethod
  def from_converted(cls, folder):
    """(hook, params) of the release's weights converted by `talkjax convert memo`."""
    from talkjax.models.memo import release
    return (cls(release.sampling_config(folder), emotion_reader=release.emotion_reader(folder)),
            release.load(folder))

  def _with_speech(self, params):
    """params with the converted wav2vec2's weights as params["speech"] (wav2vec2 only)."""
    if self.speech.kind == "wav2vec2":
      params["speech"] = self.speech.load()
    return params

  def init(self, rng):
    """Random weights of every part (the classifier's too: its trained weights come with
    `from_workdir` or a model file)."""
    m_rng, e_rng, s_rng = jax.random.split(rng, 3)
    params = self.task.init(m_rng, self.task.example_batch(1))
    out = {"memo": params["trainable"], "vae": params["frozen"]["vae"]}
    if self.speech.kind == "wav2vec2":
      out["speech"] = self.speech.init(s_rng)
    if self.emotion_reader is not None:
      out["emotion"] = self.emotion_reader.init(e_rng)
    return out

  def knobs(self, **overrides) -> MemoKnobs:
    return MemoKnobs.build(self.config.sample, **overrides)

  def request_inputs(self, *, emotion=None) -> dict:
    out = ({"identity": np.zeros(self.memo.config.identity_dim, np.float32)}
           if self.given_identity else {})
    if emotion is None:   # READ_EMOTION: each clip's emotion comes from its audio
      return {**out, "emotion": np.int32(NULL_EMOTION if self.emotion_reader is None
                                         else READ_EMOTION)}
    try:
      return {**out, "emotion": np.int32(emotion_index(str(emotion)))}
    except ValueError:
      raise TalkjaxError(f"unknown emotion {emotion!r}",
                         fix=f"use one of {', '.join(EMOTIONS)} (or MEAD's names)") from None

  def portrait_inputs(self, image, notes: list) -> dict:
    """The portrait's face embedding (host side, once per request) when the model takes
    one; a portrait without a face gets zeros and a note in the request's warnings."""
    if not self.given_identity:
      return {}
    if self.face is None:
      raise ConfigError("model.identity.encoder='given' takes the portrait's face embedding "
                        "and model.identity.recognizer names no recogniser",
                        fix="set model.identity.recognizer to the ONNX face recogniser (the "
                            "release: misc/face_analysis/models/glintr100.onnx)")
    embedding, note = self.face(image)
    if note:
      notes.append(note)
    return {"identity": embedding}

  # ---- pieces -----------------------------------------------------------------------

  def _vae(self, params, method, x):
    return self.task.vae.apply({"params": params["vae"]}, x, method=method)

  def encode(self, params, pixels, chunk: int | None = None):
    """(..., R, R, 3) in [-1, 1] -> scaled latents (posterior means), `chunk` frames at a
    time (None: all at once)."""
    lead = pixels.shape[:-3]
    flat = pixels.reshape((-1,) + pixels.shape[-3:])
    z = _in_chunks(lambda x: self.task.latents(params["vae"], x), flat, chunk)
    return z.reshape(lead + z.shape[1:])

  def decode(self, params, latents, chunk: int | None = None):
    """(B, F, h, w, C) scaled latents -> (B, F, R, R, 3) in [-1, 1], `chunk` frames at a
    time (None: all at once)."""
    b, f = latents.shape[:2]
    z = unscale_latents(self.task.vae_config, latents.reshape((b * f,) + latents.shape[2:]))
    rgb = _in_chunks(lambda x: self._vae(params, AutoencoderKL.decode, x).astype(jnp.float32),
                     z, chunk)
    return rgb.reshape((b, f) + rgb.shape[1:])

  def start(self, params, inputs, knobs):
    pixels = to_pixels(inputs["image"])
    reference = self.encode(params, pixels)
    memo = params["memo"]
    if not self.given_identity:
      identity = self.task.identity_encoder.apply({"params": memo["identity_encoder"]}, pixels)
    else:
      identity = jnp.asarray(inputs["identity"], jnp.float32)
    b = pixels.shape[0]
    tokens = self.memo.image_tokens(memo, identity)
    null_tokens = self.memo.image_tokens(memo, jnp.zeros_like(identity))
    emotion = jnp.broadcast_to(jnp.asarray(inputs.get("emotion", NULL_EMOTION), jnp.int32), (b,))
    context = {"reference": reference, "tokens": tokens, "null_tokens": null_tokens,
               "emotion": emotion}
    h, w = reference.shape[1:3]
    branches = 2 if knobs.guidance != 1.0 else 1
    carry = {"past": jnp.repeat(reference[:, None], self.past, axis=1),
             "memory": self.memo.empty_memory(branches * b, h, w)}
    return context, carry

  def chunk(self, params, context, carry, tracks, keys, knobs, runtime):
    del runtime
    memo, f = params["memo"], self.window
    b = keys.shape[0]
    guided = knobs.guidance != 1.0
    samples = tracks["audio"]                   # context + clip + lookahead samples
    cut = self.audio_context - self.speech_context
    speech = self.speech.chunk(samples[:, cut:samples.shape[1] - cut], f, params.get("speech"))
    audio = self.memo.audio_tokens(memo, speech)                      # (B, F, La, D)
    tokens, emotion = context["tokens"], context["emotion"]
    if self.emotion_reader is not None:
      window = self.emotion_reader.window
      start = (samples.shape[1] - window) // 2
      heard = self.emotion_reader(params["emotion"], samples[:, start:start + window])
      emotion = jnp.where(emotion == READ_EMOTION, heard, emotion)
    reference, past = context["reference"], carry["past"]
    if guided:   # [guided; unguided] rows, the release's unguided branch
      tokens = jnp.concatenate([tokens, context["null_tokens"]])
      audio = jnp.concatenate([audio, jnp.zeros_like(audio)])
      emotion = jnp.concatenate([emotion, jnp.full_like(emotion, NULL_EMOTION)])
      reference, past = (jnp.concatenate([v, v]) for v in (reference, past))
    rows = tokens.shape[0]
    ref_feats, past_feats = self.memo.condition_from(memo["reference_net"], reference, past,
                                                     tokens)
    memory = self.memo.remember(memo["diffusion_net"], carry["memory"], past_feats)
    hook_inputs = self.memo.hook_inputs(ref_feats, jnp.arange(rows) < b, audio, emotion,
                                        memory, reference)
    h, w = reference.shape[1:3]
    shape = (f, h, w, self.task.vae_config.latent_channels)
    noise = jax.vmap(lambda k: jax.random.normal(k, shape))(keys)

    # the residual output's anchor (model.flow.anchor): the last past frame, on the first
    # clip the portrait (the past is its copies)
    anchor = past[:, -1] if self.memo.config.anchor != "none" else None

    def velocity(x_t, sigma, cond):
      del cond
      return self.memo.denoise(memo["diffusion_net"], x_t, sigma, tokens, hook_inputs,
                               anchor=anchor).astype(jnp.float32)

    def model(x, sigma):
      if not guided:
        return velocity(x, sigma, None)
      v = velocity(jnp.concatenate([x, x]), jnp.concatenate([sigma, sigma]), None)
      cond, uncond = jnp.split(v, 2)
      return guidance.combine(cond, uncond, knobs.guidance)

    latents = samplers.flow_euler_sample(model, noise, knobs.steps,
                                         sigmas=samplers.flow_match_sigmas(knobs.steps))
    rgb = self.decode(params, latents, knobs.vae_chunk)
    frames = jnp.clip(jnp.round((rgb + 1) * 127.5), 0, 255).astype(jnp.uint8)
    # The next clip's past: this clip's frames as the VAE reads them back (the release
    # re-encodes the decoded frames), after the older ones when P > F.
    again = self.encode(params, jnp.clip(rgb, -1.0, 1.0), knobs.vae_chunk)
    past = jnp.concatenate([carry["past"], again], axis=1)[:, -self.past:]
    return {"past": past, "memory": memory}, {"frames": frames}


def _in_chunks(fn, x, chunk: int | None):
  """fn over the leading axis of x, `chunk` rows at a time under lax.map (one chunk's
  activations live at once); the last chunk is padded with copies and cut."""
  n = x.shape[0]
  if chunk is None or chunk >= n:
    return fn(x)
  pad = -n % chunk
  if pad:
    x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)])
  y = jax.lax.map(fn, x.reshape((-1, chunk) + x.shape[1:]))
  return y.reshape((-1,) + y.shape[2:])[:n]


def lively(params, scale: float = 0.05, seed: int = 0):
  """Random weights with every zero-initialised layer (memory proj_out, emotion
  modulations) made non-zero, for tests and benchmarks of untrained models."""
  key = jax.random.PRNGKey(seed)
  leaves, tree = jax.tree_util.tree_flatten(params)
  leaves = [np.asarray(x) for x in leaves]
  zero = {i: x.shape for i, x in enumerate(leaves) if x.ndim > 1 and not np.any(x)}
  # one program for every draw (drawn one by one, each shape compiled on its own)
  draws = jax.jit(lambda key: {i: jax.random.normal(jax.random.fold_in(key, i), shape)
                               for i, shape in zero.items()})(key)
  return jax.tree_util.tree_unflatten(
      tree, [x + scale * np.asarray(draws[i]) if i in zero else x for i, x in enumerate(leaves)])

