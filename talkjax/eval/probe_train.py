"""Training the SynthTalk probe on a built SynthTalk set (frames + ground truth).

  talkjax data build synthtalk --out data/probe_train --identities 1200 --clips 3600 --seconds 0.8 --seed 1
  talkjax eval train-probe --data data/probe_train --steps 5000

writes talkjax/eval/probe_weights.msgpack (the weights shipped with the package).
"""

from __future__ import annotations

import time

import numpy as np

from talkjax.data.synthtalk import SynthTalkClips
from talkjax.eval import probe as probe_lib

SHIFT_PX = 3
PX_UNITS = 2 * 0.8 / probe_lib.INPUT_SIZE  # one pixel in SynthTalk's face units (ZOOM = 0.8)
LOSS_WEIGHTS = {"mouth_open": 20.0, "mouth_width": 5.0, "emotion": 1.0, "intensity": 0.3,
                "speaking": 1.0, "blink": 3.0, "head_pose": 2.0, "identity": 2.0}


def load_split_frames(data, splits=("train", "val", "test")) -> dict:
  """Every frame of the given splits with its labels, frames uint8 at the probe's size."""
  cols = {k: [] for k in ("frames", "mouth_open", "mouth_width", "emotion", "intensity",
                          "speaking", "blink", "head_pose", "identity", "identity_params",
                          "clip")}
  for split in splits:
    source = SynthTalkClips(data, split)
    for i in range(len(source)):
      clip = source.clip(i)
      t = len(clip["frames"])
      frames = clip["frames"]
      if frames.shape[1] != probe_lib.INPUT_SIZE:
        frames = ((probe_lib.prepare_frames(frames) + 1) * 127.5).round().astype(np.uint8)
      cols["frames"].append(frames)
      for key in ("mouth_open", "mouth_width", "emotion", "intensity", "speaking", "blink",
                  "head_pose"):
        cols[key].append(np.asarray(clip[key]))
      cols["identity"].append(np.full(t, int(clip["identity"])))
      cols["identity_params"].append(np.tile(clip["identity_params"], (t, 1)))
      cols["clip"].append(np.full(t, f"{split}/{i}"))
  return {k: np.concatenate(v) for k, v in cols.items()}


def _loss_fn(params, batch):
  import jax.numpy as jnp
  import optax
  out = probe_lib.model().apply({"params": params}, batch["x"])
  losses = {
      "mouth_open": jnp.mean((out["mouth_open"] - batch["mouth_open"]) ** 2),
      "mouth_width": jnp.mean((out["mouth_width"] - batch["mouth_width"]) ** 2),
      "blink": jnp.mean((out["blink"] - batch["blink"]) ** 2),
      "head_pose": jnp.mean((out["head_pose"] - batch["head_pose"] / probe_lib.POSE_SCALE) ** 2),
      "identity": jnp.mean((out["identity"] - batch["identity_params"]) ** 2),
      "emotion": optax.softmax_cross_entropy_with_integer_labels(
          out["emotion"], batch["emotion"]).mean(),
      "intensity": optax.softmax_cross_entropy_with_integer_labels(
          out["intensity"], batch["intensity"]).mean(),
      "speaking": optax.sigmoid_binary_cross_entropy(
          out["speaking"], batch["speaking"].astype(jnp.float32)).mean(),
  }
  total = sum(LOSS_WEIGHTS[k] * v for k, v in losses.items())
  return total, losses


def train(data, *, steps: int = 3000, batch_size: int = 64, seed: int = 0, lr: float = 2e-3,
          out=probe_lib.WEIGHTS, log=print):
  """Train on every split of `data` (all of its identities) and save the weights to `out`."""
  import jax
  import optax
  table = load_split_frames(data)
  n = len(table["frames"])
  log(f"probe: {n} frames from {data}")
  params = probe_lib.init_params(seed)
  schedule = optax.warmup_cosine_decay_schedule(0.0, lr, min(200, steps // 10), steps, lr * 0.02)
  opt = optax.adamw(schedule, weight_decay=1e-4)
  opt_state = opt.init(params)

  @jax.jit
  def step(params, opt_state, batch):
    (total, losses), grads = jax.value_and_grad(_loss_fn, has_aux=True)(params, batch)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, total, losses

  rng = np.random.default_rng(seed)
  start = time.perf_counter()
  for i in range(steps):
    idx = rng.integers(0, n, batch_size)
    x = table["frames"][idx].astype(np.float32) / 127.5 - 1.0
    x += rng.normal(0, 0.02, x.shape).astype(np.float32)  # tolerance to generator noise
    batch = {k: table[k][idx] for k in ("mouth_open", "mouth_width", "emotion", "intensity",
                                        "speaking", "blink", "head_pose", "identity_params")}
    # Shift the whole batch by a few pixels (and the translation labels with it) so the
    # network cannot memorise where each training face sits.
    sy, sx = rng.integers(-SHIFT_PX, SHIFT_PX + 1, 2)
    x = np.roll(x, (sy, sx), axis=(1, 2))
    pose = batch["head_pose"].copy()
    pose[:, 3] += sx * PX_UNITS
    pose[:, 4] += sy * PX_UNITS
    batch["head_pose"] = pose
    batch["x"] = x
    params, opt_state, total, losses = step(params, opt_state, batch)
    if i % 250 == 0 or i == steps - 1:
      parts = " ".join(f"{k}={float(v):.4f}" for k, v in losses.items())
      log(f"step {i} loss={float(total):.4f} {parts} ({time.perf_counter() - start:.0f} s)")
    if i and i % 500 == 0:  # a usable file early, in case training is cut short
      probe_lib.save_params(params, out, meta={"steps": i, "data": str(data)})
  probe_lib.save_params(params, out, meta={"steps": steps, "data": str(data)})
  return params
