"""`talkjax bench sample`: generated frames per second, at batch 1 and batched, per resolution.

The whole path is timed: speech features, few-step motion sampling with guidance, and
rendering, as the one jitted program `IFMDMGenerator.generate` runs (compilation excluded,
device work included: results are fetched before the clock stops). Without --checkpoint the
weights are random (speed does not depend on them); the renderer's architecture then comes
from the stage-1 config the stage-2 config names, at each --resolution.
"""

from __future__ import annotations

import json
import time

import numpy as np

EXAMPLES = """\
  talkjax bench sample --config ifmdm/synthtalk_tiny_stage2 --resolutions 64 128 --batches 1 8
  talkjax bench sample --config ifmdm/hdtf_512_stage2 --resolutions 512 --batches 1 16 --json s.json
  talkjax bench sample --config ifmdm/synthtalk_tiny_stage2 --checkpoint runs/ifmdm_tiny_stage2
"""


def add_arguments(parser):
  parser.add_argument("--config", required=True, help="stage-2 experiment config (path or name)")
  parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                      metavar="KEY=VALUE", help="config overrides")
  parser.add_argument("--checkpoint", help="stage-2 training folder or model file (default: "
                                           "random weights)")
  parser.add_argument("--resolutions", type=int, nargs="+", help="frame sizes (default: the "
                      "stage-1 config's)")
  parser.add_argument("--batches", type=int, nargs="+", default=[1, 8],
                      help="batch sizes; the batch is split over all devices (default 1 8)")
  parser.add_argument("--seconds", type=float, default=10.0, help="audio per video (default 10)")
  parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median counts")


def random_generator(config, resolution: int, seed: int = 0):
  """An IFMDMGenerator with random weights at `resolution` (for timing only)."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  from talkjax import config as cfg
  from talkjax.models import make_task
  from talkjax.models.ifmdm import build_autoencoder
  from talkjax.models.ifmdm_generate import IFMDMGenerator
  s1 = cfg.load_config(config.stage1.config, [f"model.resolution={resolution}"])
  renderer = build_autoencoder(s1.model)
  image = jnp.zeros((1, resolution, resolution, 3))
  r_params = nn.meta.unbox(jax.jit(renderer.init)(jax.random.PRNGKey(seed), image, image))["params"]
  task = make_task(config)
  d_params = nn.meta.unbox(jax.jit(task.init)(jax.random.PRNGKey(seed), task.example_batch(1)))
  return IFMDMGenerator(config, renderer, r_params, d_params, resolution,
                        random_audio_encoder=True)


def measure(gen, batch: int, seconds: float, repeats: int) -> dict:
  r = gen.resolution
  images = np.zeros((batch, r, r, 3), np.uint8)
  audio = np.random.default_rng(0).standard_normal((batch, int(seconds * 16000))).astype(np.float32) * 0.1
  t = time.perf_counter()
  _, frames = gen.generate(images, audio)
  compile_s = time.perf_counter() - t
  times = []
  for i in range(repeats):
    t = time.perf_counter()
    gen.generate(images, audio, seed=i + 1)
    times.append(time.perf_counter() - t)
  s = float(np.median(times))
  n = frames.shape[0] * frames.shape[1]
  return {"resolution": r, "batch": batch, "frames": int(n), "seconds": s,
          "fps": n / s, "first_call_s": compile_s}


def run(args) -> int:
  import jax
  from talkjax import config as cfg
  from talkjax.errors import TalkjaxError
  from talkjax.models import load_generator
  config = cfg.load_config(args.config, args.overrides)
  if config.family != "ifmdm_stage2":
    raise TalkjaxError(f"bench sample needs an IF-MDM stage-2 config, this is {config.family!r}",
                       fix="pass e.g. --config ifmdm/synthtalk_tiny_stage2")
  rows = []
  if args.checkpoint:
    gens = [load_generator(args.checkpoint)]
  else:
    resolutions = args.resolutions or [cfg.load_config(config.stage1.config).model.resolution]
    gens = [random_generator(config, r) for r in resolutions]
  for gen in gens:
    r = gen.resolution
    for batch in args.batches:
      row = measure(gen, batch, args.seconds, args.repeats)
      rows.append(row)
      print(f"{r:>4} px  batch {batch:>3}: {row['fps']:9.1f} frames/s  "
            f"({row['frames']} frames in {row['seconds']:.2f} s; first call {row['first_call_s']:.1f} s)")
  device = jax.devices()[0]
  result = {"config": args.config, "device": device.device_kind, "devices": jax.device_count(),
            "platform": device.platform, "seconds_of_audio": args.seconds,
            "weights": args.checkpoint or "random", "results": rows}
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)
  return 0
