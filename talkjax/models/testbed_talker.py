"""The test-bed talker: a tiny second generator family that takes every request input.

Not a talking-head model: it exists so the generation layer is tested on a family other than
IF-MDM, one that takes partner audio and an emotion label and carries state across chunks
(a recurrent cell over frames), in seconds on a CPU. Each frame is the portrait with a
per-channel colour offset computed from both tracks' loudness, the emotion, noise and the
recurrent state, so every input visibly changes the frames.

Training (`testbed_talker`) regresses those offsets on a synthetic teacher, so the trainer
writes a real checkpoint that `talkjax sample` then loads like any other.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talkjax import stages
from talkjax.errors import TalkjaxError
from talkjax.family import Knobs
from talkjax.nn.layers import Dense, logical_init

EMOTIONS = ("neutral", "happy", "sad", "angry")
SAMPLES_PER_FRAME = 640
CONTEXT = SAMPLES_PER_FRAME      # each chunk also sees the frame of audio before it
QUARTERS = 4


def loudness(track, frames: int, xp=jnp):
  """(B, 640 + frames * 640) -> (B, frames, 5): the log-energy of each quarter of every
  frame, and of the whole frame before it. `xp=np` for data loading (no JAX in Grain's
  threads)."""
  b = track.shape[0]
  x = track.reshape(b, frames + 1, QUARTERS, SAMPLES_PER_FRAME // QUARTERS)
  energy = xp.log(xp.mean(x ** 2, axis=-1) + 1e-4)          # (B, frames + 1, 4)
  previous = xp.mean(energy[:, :-1], axis=-1, keepdims=True)
  return xp.concatenate([energy[:, 1:], previous], axis=-1)


class TalkerNet(nn.Module):
  """(audio, partner features (B, T, 5), emotion (B,), noise (B, T, H), state (B, H)) ->
  (colour offsets (B, T, 3), the last state)."""
  hidden: int = 16

  @nn.compact
  def __call__(self, audio, partner, emotion, noise, state):
    h = self.hidden
    table = self.param("emotion_table", logical_init(nn.initializers.normal(0.5), (None, "embed")),
                       (len(EMOTIONS), h))
    x = Dense(h, axes=(None, "embed"), name="audio_in")(jnp.concatenate([audio, partner], -1))
    x = x + table[emotion][:, None, :] + noise
    recurrent = self.param("recurrent", logical_init(nn.initializers.orthogonal(0.5),
                                                     ("embed", "mlp")), (h, h))

    def step(carry, x_t):
      carry = jnp.tanh(x_t + carry @ recurrent)
      return carry, carry

    state, hs = jax.lax.scan(step, state, jnp.swapaxes(x, 0, 1))
    return Dense(3, axes=("mlp", None), name="out")(jnp.swapaxes(hs, 0, 1)), state


class SyntheticTalk:
  """Example i: two random loud-and-quiet tracks, an emotion and the teacher's offsets."""

  def __init__(self, num_examples: int, frames: int, seed: int):
    self.n, self.frames, self.seed = num_examples, frames, seed
    rng = np.random.default_rng([seed, 7])
    self.w = rng.standard_normal((10, 3)).astype(np.float32) / 3

  def __len__(self):
    return self.n

  def __getitem__(self, index):
    rng = np.random.default_rng([self.seed, int(index)])
    n = CONTEXT + self.frames * SAMPLES_PER_FRAME
    envelope = lambda: np.repeat(rng.uniform(0.01, 1.0, n // 160), 160)
    audio = (rng.standard_normal(n) * envelope()).astype(np.float32)
    partner = (rng.standard_normal(n) * envelope()).astype(np.float32)
    emotion = np.int32(rng.integers(len(EMOTIONS)))
    feats = np.concatenate([loudness(t[None], self.frames, xp=np)[0] for t in (audio, partner)], -1)
    target = np.tanh(feats @ self.w / 4 + 0.3 * (emotion - 1.5)).astype(np.float32)
    return {"audio": audio, "partner": partner, "emotion": emotion, "target": target}


class TalkerTask:
  def __init__(self, config):
    self.config = config
    self.net = TalkerNet(hidden=int(config.model.hidden))

  def example_batch(self, batch_size):
    n = CONTEXT + int(self.config.model.window) * SAMPLES_PER_FRAME
    track = np.zeros((batch_size, n), np.float32)
    return {"audio": track, "partner": track, "emotion": np.zeros((batch_size,), np.int32),
            "target": np.zeros((batch_size, int(self.config.model.window), 3), np.float32)}

  def batch_axes(self):
    return {"audio": ("batch", None), "partner": ("batch", None), "emotion": ("batch",),
            "target": ("batch", "frames", None)}

  def _apply(self, net_params, audio, partner, emotion, noise, state):
    frames = (audio.shape[1] - CONTEXT) // SAMPLES_PER_FRAME
    return self.net.apply({"params": net_params}, loudness(audio, frames),
                          loudness(partner, frames), emotion, noise, state)

  def init(self, rng, batch):
    b, w, h = batch["audio"].shape[0], int(self.config.model.window), int(self.config.model.hidden)
    frames = (batch["audio"].shape[1] - CONTEXT) // SAMPLES_PER_FRAME
    net = self.net.init(rng, loudness(batch["audio"], frames), loudness(batch["partner"], frames),
                        batch["emotion"], jnp.zeros((b, w, h)), jnp.zeros((b, h)))["params"]
    return {"trainable": {"net": net}, "frozen": {}}

  def loss(self, params, batch, rng):
    del rng
    b, w, h = batch["audio"].shape[0], int(self.config.model.window), int(self.config.model.hidden)
    out, _ = self._apply(params["trainable"]["net"], batch["audio"], batch["partner"],
                         batch["emotion"], jnp.zeros((b, w, h)), jnp.zeros((b, h)))
    per_example = jnp.mean((out - batch["target"]) ** 2, axis=(1, 2))
    return per_example, {"mse": jnp.mean(per_example)}

  def data_source(self, split):
    d = self.config.data
    n = d.num_examples if split == "train" else d.eval_examples
    return SyntheticTalk(n, int(self.config.model.window),
                         self.config.seed + (0 if split == "train" else 1_000_003))


@dataclasses.dataclass(frozen=True)
class TalkerKnobs(Knobs):
  RUNTIME = ("noise_scale",)
  FAMILY = "test-bed talker"
  noise_scale: float = 0.5    # how much the per-frame noise moves the colours
  amplitude: float = 60.0     # grey levels of the largest offset

  def validate(self):
    for name, hi in (("noise_scale", 100.0), ("amplitude", 255.0)):
      if not 0 <= getattr(self, name) <= hi:
        raise TalkjaxError(f"sampling option {name}={getattr(self, name)} is out of range",
                           fix=f"give {name} a value in 0..{hi}")


class TalkerGeneration:
  fps = 25
  accepts = frozenset({"partner_audio", "emotion"})
  requires = frozenset()
  emotions = tuple(EMOTIONS)
  audio_context = CONTEXT
  audio_lookahead = 0
  full_precision = ()

  def __init__(self, config):
    self.config, self.linked = config, {}
    self.task = TalkerTask(config)
    self.window = int(config.model.window)
    self.resolution = int(config.model.resolution)
    self.hidden = int(config.model.hidden)

  @classmethod
  def from_config(cls, config, linked=None, *, resolution=None):
    del linked
    from talkjax.config import with_resolution
    return cls(with_resolution(config, resolution))

  @classmethod
  def from_workdir(cls, workdir, *, ema: bool = True):
    trained = stages.read_params(workdir, ema=ema)
    return cls(trained.config), {"net": trained.params["trainable"]["net"]}

  def init(self, rng):
    return {"net": self.task.init(rng, self.task.example_batch(1))["trainable"]["net"]}

  def knobs(self, **overrides) -> TalkerKnobs:
    return TalkerKnobs.build(self.config.sample, **overrides)

  def request_inputs(self, *, emotion=None) -> dict:
    if emotion is not None and emotion not in EMOTIONS:
      raise TalkjaxError(f"unknown emotion {emotion!r}", fix=f"use one of {', '.join(EMOTIONS)}")
    return {"emotion": np.int32(EMOTIONS.index(emotion or "neutral"))}

  def start(self, params, inputs, knobs):
    return {"image": inputs["image"], "emotion": inputs["emotion"]}, \
        jnp.zeros((inputs["image"].shape[0], self.hidden), jnp.float32)

  def chunk(self, params, context, carry, tracks, keys, knobs, runtime):
    noise = jax.vmap(lambda k: jax.random.normal(k, (self.window, self.hidden)))(keys)
    noise = noise * runtime["noise_scale"][:, None, None]
    offsets, carry = self.task._apply(params["net"], tracks["audio"], tracks["partner_audio"],
                                      context["emotion"], noise, carry)
    image = context["image"].astype(jnp.float32)[:, None]                # (B, 1, R, R, 3)
    frames = image + knobs.amplitude * jnp.tanh(offsets)[:, :, None, None, :]
    frames = jnp.clip(jnp.round(frames), 0, 255).astype(jnp.uint8)
    return carry, {"frames": frames, "offsets": offsets}
