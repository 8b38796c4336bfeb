"""IF-MDM generation: image + audio -> motion (few-step DDIM + CFG) -> rendered frames.

Long audio is cut into chunks of `window` frames. Each chunk's hint token is the previous
chunk's last motion (the input image's motion for the first), so chunks chain without a
seam; its mean token is the input image's motion ("image": keeps the posture) or the
previous chunk's last motion ("previous": lets the pose wander); its std token is
`std_scale` x the training set's median window std (larger = livelier motion).

`IFMDMGenerator.generate` runs all chunks (motion sampling and rendering) as one jitted
lax.scan, batched over the leading axis and sharded over every device; `stream()` runs
the same per-chunk step as audio arrives, and gives the same frames.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from talkjax.diffusion import guidance, samplers, schedules
from talkjax.errors import TalkjaxError
from talkjax.models.ifmdm_audio import SAMPLES_PER_FRAME, SpeechFeatures

MEAN_MODES = ("image", "previous")


@dataclasses.dataclass(frozen=True)
class Knobs:
  steps: int = 10           # DDIM steps
  guidance: float = 2.0     # classifier-free guidance scale on audio (1 = off)
  std_scale: float = 1.0    # motion intensity
  mean: str = "image"       # "image" | "previous"

  @classmethod
  def from_config(cls, sample_config, **overrides):
    values = {f.name: sample_config[f.name] for f in dataclasses.fields(cls) if f.name in sample_config}
    values.update({k: v for k, v in overrides.items() if v is not None})
    knobs = cls(**values)
    if knobs.mean not in MEAN_MODES:
      raise TalkjaxError(f"mean mode {knobs.mean!r} is not known", fix=f"use one of {MEAN_MODES}")
    if knobs.steps < 1 or knobs.std_scale < 0:
      raise TalkjaxError(f"sampling steps ({knobs.steps}) must be >= 1 and std_scale "
                         f"({knobs.std_scale}) >= 0", fix="pick valid values")
    return knobs

  def compiled_part(self) -> "Knobs":
    """The settings that change the compiled program; std_scale is a runtime input, so
    requests with different motion intensities share one program (and one batch)."""
    return dataclasses.replace(self, std_scale=1.0)


def to_model_image(image):
  """uint8 (..., R, R, 3) or float in [-1, 1] -> float32 in [-1, 1]."""
  image = jnp.asarray(image)
  return image.astype(jnp.float32) / 127.5 - 1.0 if image.dtype == jnp.uint8 else image.astype(jnp.float32)


class IFMDMGenerator:
  """Stage-1 renderer + stage-2 motion DiT with their parameters."""

  fps = 25
  accepts = frozenset()   # no partner audio, no emotion label

  def __init__(self, config, renderer, renderer_params, dit_params, resolution: int,
               random_audio_encoder: bool = False, stage1_config=None):
    from talkjax.models.ifmdm import build_motion_dit, motion_stats
    self.config = config
    self.stage1_config = stage1_config   # the renderer's config, kept for save_bundle
    self.window = int(config.model.window)
    self.resolution = int(resolution)
    self.renderer, self.dit = renderer, build_motion_dit(config)
    self.params = {"renderer": renderer_params, "dit": dit_params}
    self.speech = SpeechFeatures(config.model.audio, random_init=random_audio_encoder)
    self.params["speech"] = self.speech.params  # None for log-mel
    self.mean, self.std, self.window_std = (jnp.asarray(v) for v in motion_stats(config))
    self.alphas = schedules.alphas_cumprod(config.diffusion.steps, config.diffusion.schedule)

  def knobs(self, **overrides) -> Knobs:
    """Sampling settings: the config's `sample.*` with `overrides` (unknown names fail)."""
    names = {f.name for f in dataclasses.fields(Knobs)}
    unknown = sorted(set(overrides) - names)
    if unknown:
      raise TalkjaxError(f"unknown IF-MDM sampling option(s) {unknown}",
                         fix=f"use {sorted(names)}")
    return Knobs.from_config(self.config.sample, **overrides)

  @classmethod
  def from_workdir(cls, stage2_workdir, *, ema: bool = True):
    """Loads stage 2 from its training folder and stage 1 from the folder its config names."""
    from talkjax.models.ifmdm import load_stage1
    from talkjax.train.restore import load_trained
    config, params, _ = load_trained(stage2_workdir, ema=ema)
    if config.family != "ifmdm_stage2":
      raise TalkjaxError(f"this folder holds a {config.family!r} model, not IF-MDM stage 2",
                         path=stage2_workdir, fix="pass the stage-2 training folder")
    stage1 = load_stage1(config)
    return cls(config, stage1.model, stage1.params, params, stage1.config.model.resolution,
               stage1_config=stage1.config)

  @classmethod
  def from_bundle(cls, path):
    """Loads a single-file model written by `save_bundle` (what talkjax ships)."""
    import json
    import pathlib
    import flax.serialization
    import ml_collections
    path = pathlib.Path(path)
    try:
      data = flax.serialization.msgpack_restore(path.read_bytes())
      config = ml_collections.ConfigDict(json.loads(data["config"]))
      stage1 = ml_collections.ConfigDict(json.loads(data["stage1_config"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise TalkjaxError(f"not a talkjax IF-MDM model file ({type(e).__name__}: {e})", path=path,
                         fix="write one with `talkjax convert bundle --src STAGE2_DIR "
                             "--out FILE`") from e
    from talkjax.models.ifmdm import build_autoencoder
    f32 = lambda t: jax.tree.map(lambda x: np.asarray(x, np.float32), t)
    return cls(config, build_autoencoder(stage1.model), f32(data["renderer"]), f32(data["dit"]),
               stage1.model.resolution, stage1_config=stage1)

  def save_bundle(self, path, dtype=np.float16) -> None:
    """One file with both stages' configs and parameters, stored as `dtype` (float16 halves
    the file; loading computes in float32 again)."""
    import flax.serialization
    if self.stage1_config is None:
      raise TalkjaxError("this generator was built without its stage-1 config",
                         fix="load it with from_workdir() or from_bundle() before saving")
    stage1_config = self.stage1_config
    to_np = lambda t: jax.tree.map(lambda x: np.asarray(x, dtype), t)
    payload = {"config": self.config.to_json(), "stage1_config": stage1_config.to_json(),
               "renderer": to_np(self.params["renderer"]), "dit": to_np(self.params["dit"])}
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
      f.write(flax.serialization.msgpack_serialize(payload))
    os.replace(tmp, path)  # a half-written file never takes the model's name

  # ---- one chunk ---------------------------------------------------------------------------

  def sample_motion(self, params, feats, hint, mean, std, noise, knobs: Knobs):
    """Normalised-space DDIM with CFG on audio; inputs/outputs in raw motion units."""
    z = lambda x: (x - self.mean) / self.std
    b = feats.shape[0]
    cond = {"audio": feats, "drop": jnp.zeros((b, 4), bool)}

    def model(x_t, t, c):
      n = x_t.shape[0] // b
      rep = lambda v: jnp.concatenate([v] * n)
      return self.dit.apply({"params": params["dit"]}, x_t, t, c["audio"], rep(z(hint)),
                            rep(z(mean)), rep(std / self.std), c["drop"])

    def unconditional(c):  # drop the audio only: CFG is on audio
      return {"audio": c["audio"], "drop": c["drop"].at[:, 0].set(True)}

    fn = guidance.guided(model, knobs.guidance, unconditional)
    x = samplers.ddim_sample(lambda x_t, t: fn(x_t, t, cond), noise, self.alphas, knobs.steps,
                             prediction=self.config.diffusion.prediction)
    return x * self.std + self.mean

  def render(self, params, appearance, motion):
    """(B, W, D) motion -> (B, W, R, R, 3) uint8."""
    render_one = lambda a: self.renderer.apply({"params": params["renderer"]}, appearance, a,
                                               method=self.renderer.render)
    rgb = jax.vmap(render_one, in_axes=1, out_axes=1)(motion)
    return jnp.clip(jnp.round((rgb.astype(jnp.float32) + 1) * 127.5), 0, 255).astype(jnp.uint8)

  def appearance(self, params, image):
    return self.renderer.apply({"params": params["renderer"]}, to_model_image(image),
                               method=self.renderer.encode_appearance)

  def chunk_step(self, params, appearance, carry, feats, noise, knobs: Knobs, std_scale):
    """carry = (hint, image motion): returns (new carry, (motion, frames)) for one chunk.
    `std_scale` (B,) is each example's motion intensity (knobs.std_scale is not used)."""
    hint, image_motion = carry
    mean = image_motion if knobs.mean == "image" else hint
    std = std_scale[:, None] * self.window_std
    motion = self.sample_motion(params, feats, hint, mean, std, noise, knobs)
    return (motion[:, -1], image_motion), (motion, self.render(params, appearance, motion))

  # ---- whole clips ---------------------------------------------------------------------------

  def chunk_noise(self, seeds, index: int) -> np.ndarray:
    """(len(seeds), W, D) starting noise of chunk `index`, one independent stream per seed,
    so a request gets the same noise alone or inside any batch."""
    shape = (self.window, int(self.config.model.motion_dim))
    return np.asarray(_noise(jnp.asarray(np.asarray(seeds, np.uint32)), index, shape))

  def _generate(self, params, images, audio, noise, std_scale, knobs: Knobs):
    appearance = self.appearance(params, images)
    feats = self.speech.chunks(audio, self.window, params["speech"])  # (n, B, W, A)
    carry = (appearance[2], appearance[2])
    step = lambda c, x: self.chunk_step(params, appearance, c, x[0], x[1], knobs, std_scale)
    _, (motion, frames) = jax.lax.scan(step, carry, (feats, noise))
    swap = lambda x: jnp.swapaxes(x, 0, 1).reshape((x.shape[1], -1) + x.shape[3:])
    return swap(motion), swap(frames)

  def generate(self, images, audio, *, seed=0, knobs=None, chunks: int = 0):
    """images (B, R, R, 3), audio (B, N) 16 kHz -> (motion (B, T, D), frames (B, T, R, R, 3)),
    T = ceil(N / 640) frames at 25 fps; the audio is padded with silence to whole chunks
    (at least `chunks` of them). `seed` is one int or one per example; `knobs` one Knobs or
    one per example (they may differ in std_scale only)."""
    knobs = knobs or Knobs.from_config(self.config.sample)
    per_example = [knobs] * len(audio) if isinstance(knobs, Knobs) else list(knobs)
    compiled = {k.compiled_part() for k in per_example}
    if len(compiled) != 1 or len(per_example) != len(audio):
      raise TalkjaxError("one batch needs one Knobs per example, equal but for std_scale",
                         fix="sample requests with other settings in another batch")
    knobs = compiled.pop()
    images, audio = np.asarray(images), np.asarray(audio, np.float32)
    if audio.ndim != 2 or audio.shape[1] < SAMPLES_PER_FRAME:
      raise TalkjaxError(f"audio of shape {audio.shape} is shorter than one frame (640 samples "
                         "at 16 kHz, 25 fps)", fix="give at least 40 ms of audio")
    if len(images) != len(audio):
      raise TalkjaxError(f"{len(images)} images but {len(audio)} audio tracks",
                         fix="give one image per audio track")
    b, n = audio.shape
    frames = -(-n // SAMPLES_PER_FRAME)
    chunks = max(chunks, -(-frames // self.window))
    audio = np.pad(audio, ((0, 0), (0, chunks * self.window * SAMPLES_PER_FRAME - n)))
    seeds = np.broadcast_to(np.asarray(seed), (b,))
    noise = np.stack([self.chunk_noise(seeds, i) for i in range(chunks)]).astype(np.float32)
    scales = np.asarray([k.std_scale for k in per_example], np.float32)
    # Pad the batch to a multiple of the device count; each device renders its share.
    ways = jax.device_count()
    pad = -b % ways
    if pad:
      images = np.concatenate([images, np.repeat(images[-1:], pad, 0)])
      audio = np.concatenate([audio, np.repeat(audio[-1:], pad, 0)])
      noise = np.concatenate([noise, np.repeat(noise[:, -1:], pad, 1)], axis=1)
      scales = np.concatenate([scales, np.repeat(scales[-1:], pad)])
    batch, replicated = self._shardings()
    motion, video = self._jitted(knobs)(
        jax.device_put(self.params, replicated), jax.device_put(images, batch),
        jax.device_put(audio, batch), jax.device_put(noise, self._noise_sharding()),
        jax.device_put(scales, batch))
    return np.asarray(motion[:b, :frames]), np.asarray(video[:b, :frames])

  @functools.cached_property
  def _mesh(self):
    return jax.sharding.Mesh(np.asarray(jax.devices()), ("batch",))

  def _shardings(self):
    P = jax.sharding.PartitionSpec
    return (jax.sharding.NamedSharding(self._mesh, P("batch")),
            jax.sharding.NamedSharding(self._mesh, P()))

  def _noise_sharding(self):
    P = jax.sharding.PartitionSpec
    return jax.sharding.NamedSharding(self._mesh, P(None, "batch"))

  @functools.lru_cache(maxsize=None)
  def _jitted(self, knobs: Knobs):
    """One compiled program per knob setting (and, inside jit's cache, per input shape)."""
    return jax.jit(functools.partial(self._generate, knobs=knobs))

  def stream(self, image, *, seed: int = 0, knobs: Knobs | None = None):
    return MotionStream(self, image, seed, knobs or Knobs.from_config(self.config.sample))


@functools.partial(jax.jit, static_argnums=2)
def _noise(seeds, index, shape):
  key = lambda s: jax.random.fold_in(jax.random.PRNGKey(s), index)
  return jax.vmap(lambda s: jax.random.normal(key(s), shape))(seeds)


class MotionStream:
  """Audio arriving in pieces of any size -> frames, one chunk (`window` frames) at a time.

  `push(samples)` returns the frames of every chunk completed by those samples (possibly
  none); `finish()` pads the rest with silence and returns the remaining frames. Latency is
  at most one chunk of audio. The frames equal `generate()`'s for the same seed.
  """

  def __init__(self, gen: IFMDMGenerator, image, seed: int, knobs: Knobs):
    self.gen, self.seed, self.knobs = gen, seed, knobs
    self.empty = np.zeros((0,) + np.shape(image), np.uint8)
    self.chunk_samples = gen.window * SAMPLES_PER_FRAME
    self.params = gen.params
    self.appearance = jax.jit(gen.appearance)(self.params, jnp.asarray(np.asarray(image))[None])
    self.carry = (self.appearance[2], self.appearance[2])
    self.context = np.zeros(gen.speech.context, np.float32)
    self.pending = np.zeros(0, np.float32)
    self.index = 0
    self.received = 0
    self._step = jax.jit(self._one_chunk)

  def _one_chunk(self, params, appearance, carry, samples, context, noise):
    feats = self.gen.speech.chunk(samples[None], context[None], params["speech"])
    scale = jnp.full((1,), self.knobs.std_scale, jnp.float32)
    carry, (_, frames) = self.gen.chunk_step(params, appearance, carry, feats, noise, self.knobs,
                                             scale)
    return carry, frames[0]

  def push(self, samples) -> np.ndarray:
    samples = np.asarray(samples, np.float32).reshape(-1)
    self.received += len(samples)
    self.pending = np.concatenate([self.pending, samples])
    out = []
    while len(self.pending) >= self.chunk_samples:
      out.append(self._run(self.pending[:self.chunk_samples]))
      self.pending = self.pending[self.chunk_samples:]
    return np.concatenate(out) if out else self.empty

  def _run(self, chunk):
    noise = self.gen.chunk_noise([self.seed], self.index)
    self.carry, frames = self._step(self.params, self.appearance, self.carry, jnp.asarray(chunk),
                                    jnp.asarray(self.context), noise)
    self.context = np.concatenate([self.context, chunk])[-len(self.context):] \
        if len(self.context) else self.context
    self.index += 1
    return np.asarray(frames)

  def finish(self) -> np.ndarray:
    total = -(-self.received // SAMPLES_PER_FRAME)
    done = self.index * self.gen.window
    if total <= done:
      return self.empty
    chunk = np.pad(self.pending, (0, self.chunk_samples - len(self.pending)))
    self.pending = np.zeros(0, np.float32)
    return self._run(chunk)[:total - done]
