"""The SynthTalk probe: a small CNN that reads SynthTalk's ground-truth factors from pixels.

It plays the parts SyncNet (mouth opening), ArcFace (identity embedding) and an emotion
classifier play for real video. Input: RGB frames resized to 64x64, float in [-1, 1].
Outputs per frame: mouth opening and width, emotion (8) and intensity (3) logits, a speaking
logit, blink, head pose (5) and an identity embedding (the identity parameters it regresses;
compare two faces by cosine). Weights ship as `probe_weights.msgpack` beside this file.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from talkjax.errors import TalkjaxError

INPUT_SIZE = 64
WEIGHTS = Path(__file__).with_name("probe_weights.msgpack")
IDENTITY_DIM = 30
POSE_SCALE = 0.2  # pose targets are divided by this so all regressions are ~unit scale
HEADS = {"mouth_open": 1, "mouth_width": 1, "emotion": 8, "intensity": 3, "speaking": 1,
         "blink": 1, "head_pose": 5, "identity": IDENTITY_DIM}


def _model_class():
  import flax.linen as nn

  class Probe(nn.Module):
    """Patch embedding -> two strided convs -> flatten (keeps where features are) -> heads.

    The 4x4 stride-4 stem is a lossless linear patch embedding (48 = 4*4*3 channels); the
    whole net costs ~7 MFLOPs a frame, so it trains in minutes on a shared CPU."""

    @nn.compact
    def __call__(self, x):
      x = nn.gelu(nn.Conv(48, (4, 4), strides=4, padding="VALID")(x))
      for features in (64, 96):
        x = nn.gelu(nn.Conv(features, (3, 3), strides=2, padding="SAME")(x))
      x = x.reshape(x.shape[0], -1)
      x = nn.gelu(nn.Dense(192)(x))
      out = {name: nn.Dense(size, name=name)(x) for name, size in HEADS.items()}
      for name in ("mouth_open", "mouth_width", "speaking", "blink"):
        out[name] = out[name][:, 0]
      return out

  return Probe


@functools.lru_cache(maxsize=None)
def model():
  return _model_class()()


def init_params(seed: int = 0):
  import jax
  import jax.numpy as jnp
  return model().init(jax.random.PRNGKey(seed), jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3)))["params"]


def save_params(params, path=WEIGHTS, meta: dict | None = None) -> Path:
  from flax import serialization
  import jax
  state = {"params": serialization.to_state_dict(jax.device_get(params)),
           "meta": meta or {}}
  Path(path).write_bytes(serialization.msgpack_serialize(state))
  return Path(path)


def load_params(path=WEIGHTS):
  from flax import serialization
  path = Path(path)
  if not path.exists():
    raise TalkjaxError("probe weights not found", path=path,
                       fix="train them: talkjax eval train-probe (see talkjax/eval/README.md)")
  try:
    import jax
    state = serialization.msgpack_restore(path.read_bytes())
    # the tree's structure from its shapes: an eager init compiles each of its ops alone
    return serialization.from_state_dict(jax.eval_shape(init_params), state["params"])
  except (ValueError, KeyError, TypeError) as e:
    raise TalkjaxError(f"probe weights cannot be read ({e})", path=path,
                       fix="retrain them with talkjax eval train-probe") from e


def prepare_frames(frames: np.ndarray) -> np.ndarray:
  """uint8 (T, H, W, 3) of any size -> float32 (T, 64, 64, 3) in [-1, 1]."""
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3:
    raise TalkjaxError(f"frames must be (T, H, W, 3), got {frames.shape}")
  if frames.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
    from PIL import Image
    frames = np.stack([np.asarray(Image.fromarray(f).resize((INPUT_SIZE, INPUT_SIZE),
                                                            Image.BILINEAR)) for f in frames])
  return frames.astype(np.float32) / 127.5 - 1.0


@functools.lru_cache(maxsize=None)
def _apply_fn():
  import jax
  return jax.jit(lambda params, x: model().apply({"params": params}, x))


def read_frames(params, frames: np.ndarray, batch: int = 256) -> dict:
  """The probe's reading of uint8 frames: dict of numpy arrays, one row per frame.

  mouth_open, mouth_width, blink in [0, 1]; emotion / intensity as argmax labels and
  *_probs; speaking as probability; head_pose in radians (and image units for tx, ty);
  identity as unit-norm embeddings.
  """
  x = prepare_frames(frames)
  pieces = []
  for start in range(0, len(x), batch):
    chunk = x[start:start + batch]
    pad = batch - len(chunk) if len(x) > batch else 0
    if pad:  # one compiled shape for every chunk
      chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
    out = {k: np.asarray(v)[:len(chunk) - pad] for k, v in _apply_fn()(params, chunk).items()}
    pieces.append(out)
  raw = {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}
  emb = raw["identity"]
  return {
      "mouth_open": np.clip(raw["mouth_open"], 0, 1),
      "mouth_width": np.clip(raw["mouth_width"], 0, 1),
      "blink": np.clip(raw["blink"], 0, 1),
      "emotion": raw["emotion"].argmax(-1), "emotion_probs": _softmax(raw["emotion"]),
      "intensity": raw["intensity"].argmax(-1),
      "speaking": 1 / (1 + np.exp(-raw["speaking"])),
      "head_pose": raw["head_pose"] * POSE_SCALE,
      "identity": emb / (np.linalg.norm(emb, axis=-1, keepdims=True) + 1e-8),
  }


def _softmax(z):
  z = z - z.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)
