"""`talkjax bench sample`: generated frames per second, at batch 1 and batched, per resolution.

The whole path is timed, as the one jitted program the sampling engine runs for a bucket
(`Sampler.generate`: the family's encoding, every chunk's sampling and rendering;
compilation excluded, device work included: results are fetched before the clock stops).
Without --checkpoint the weights are random (speed does not depend on them) and the family
builds its networks from the config (and the configs it names) at each --resolution.
`--stream` also times live streaming at batch 1 (`Sampler.stream`, a chunk of audio pushed
at a time). `first_call_s` includes compilation, or only loading the programs when the
persistent compilation cache already holds them (a second run): the time to a first video.
"""

from __future__ import annotations

import json
import time

import numpy as np

def _examples() -> str:
  from talkjax.models import demo_recipe
  config = demo_recipe()["stages"][-1][1]      # the demo generator's final-stage config
  return (f"  talkjax bench sample --config {config} --resolutions 64 128 --batches 1 8\n"
          f"  talkjax bench sample --config {config} --mesh data=1 fsdp=-1 --json s.json\n"
          f"  talkjax bench sample --checkpoint model.msgpack --batches 1 16 --stream\n"
          f"  talkjax bench sample --config {config} --batches 1 --clips 1 4 16 64\n")


EXAMPLES = _examples()


def add_arguments(parser):
  parser.add_argument("--config", help="a generator's final-stage experiment config (path or "
                      "name); required without --checkpoint")
  parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                      metavar="KEY=VALUE", help="config overrides")
  parser.add_argument("--checkpoint", help="training folder or model file (default: random "
                                           "weights from --config)")
  parser.add_argument("--resolutions", type=int, nargs="+", help="frame sizes (default: the "
                      "stage-1 config's)")
  parser.add_argument("--batches", type=int, nargs="+", default=[1, 8],
                      help="batch sizes; the batch is split over all devices (default 1 8)")
  parser.add_argument("--seconds", type=float, default=10.0, help="audio per video (default 10)")
  parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median counts")
  parser.add_argument("--stream", action="store_true",
                      help="also time streaming at batch 1 (Sampler.stream: audio pushed a "
                           "chunk at a time): frames/s and the time each chunk takes")
  parser.add_argument("--clips", type=int, nargs="+", default=[],
                      help="also time batch-1 videos of these many chunks (e.g. 1 4 16 64): "
                           "seconds per output frame, and each one's ratio to the first "
                           "(a family whose carried state grows with the video would rise)")
  parser.add_argument("--mesh", nargs="+", default=[], metavar="AXIS=SIZE",
                      help="mesh sizes over this host's devices (default: the config's), "
                           "e.g. --mesh data=1 fsdp=8")


def measure(sampler, batch: int, seconds: float, repeats: int) -> dict:
  r = sampler.resolution
  images = np.zeros((batch, r, r, 3), np.uint8)
  noise = np.random.default_rng(0).standard_normal((batch, int(seconds * 16000)))
  audio = (noise * 0.1).astype(np.float32)
  partner = audio[:, ::-1].copy() if "partner_audio" in sampler.accepts else None
  t = time.perf_counter()
  frames = sampler.generate(images, audio, partner_audio=partner)["frames"]
  compile_s = time.perf_counter() - t
  times = []
  for i in range(repeats):
    t = time.perf_counter()
    sampler.generate(images, audio, partner_audio=partner, seed=i + 1)
    times.append(time.perf_counter() - t)
  s = float(np.median(times))
  n = frames.shape[0] * frames.shape[1]
  return {"resolution": r, "batch": batch, "frames": int(n), "seconds": s,
          "fps": n / s, "first_call_s": compile_s}


def measure_stream(sampler, seconds: float, repeats: int) -> dict:
  """Batch-1 streaming: the audio pushed one chunk's samples at a time, as a live source
  delivers it. The first stream compiles (first_call_s: its first chunk's frames); the
  timed ones reuse its programs. chunk_ms: the median time from a chunk's last sample
  arriving to its frames; a live stream keeps up while it is below the chunk's duration."""
  r = sampler.resolution
  image = np.zeros((r, r, 3), np.uint8)
  audio = (np.random.default_rng(0).standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)
  size, first = sampler.chunk_samples, sampler.chunk_samples + sampler.audio_lookahead
  cut = lambda x: [x[:first]] + [x[i:i + size] for i in range(first, len(x), size)]
  pieces = cut(audio)
  # A dyadic family makes a chunk once both tracks hold it: push the partner's alongside.
  partner = cut(audio[::-1].copy()) if "partner_audio" in sampler.accepts else [None] * len(pieces)

  def first_chunk():   # a new stream's first frames, compiling its programs
    t = time.perf_counter()
    sampler.stream(image, seed=0).push(pieces[0], partner_audio=partner[0])
    return time.perf_counter() - t

  def whole(seed):
    t = time.perf_counter()
    stream, frames, chunk_s = sampler.stream(image, seed=seed), 0, []
    for piece, other in zip(pieces, partner):
      c = time.perf_counter()
      n = len(stream.push(piece, partner_audio=other))
      if n:
        chunk_s.append(time.perf_counter() - c)
      frames += n
    frames += len(stream.finish())
    return time.perf_counter() - t, frames, chunk_s

  first_call_s = first_chunk()
  runs = sorted((whole(i + 1) for i in range(repeats)), key=lambda x: x[0])
  total, frames, chunk_s = runs[len(runs) // 2]
  return {"resolution": r, "batch": 1, "mode": "stream", "frames": int(frames),
          "seconds": total, "fps": frames / total, "first_call_s": first_call_s,
          "chunk_frames": int(sampler.window),
          "chunk_ms": 1000 * float(np.median(chunk_s)) if chunk_s else float("nan"),
          "chunk_duration_ms": 1000 * sampler.window / sampler.fps}


def samplers(args):
  """One Sampler per resolution asked for (random weights) or the checkpoint's."""
  from talkjax import config as cfg
  from talkjax.errors import TalkjaxError
  from talkjax.models import load_generator, random_generator
  from talkjax.pipelines.sampler import Sampler
  if args.checkpoint:
    if args.resolutions:
      raise TalkjaxError("--resolutions applies to random weights only",
                         fix="drop --checkpoint or --resolutions")
    yield Sampler(*load_generator(args.checkpoint), mesh=args.mesh)
    return
  if not args.config:
    raise TalkjaxError("give --config (random weights) or --checkpoint",
                       fix="e.g. " + EXAMPLES.splitlines()[0].strip())
  config = cfg.load_config(args.config, args.overrides)
  for r in args.resolutions or [None]:
    yield Sampler(*random_generator(config, resolution=r), mesh=args.mesh)


def run(args) -> int:
  import jax
  rows = []
  for gen in samplers(args):
    r = gen.resolution
    for batch in args.batches:
      row = measure(gen, batch, args.seconds, args.repeats)
      rows.append(row)
      print(f"{r:>4} px  batch {batch:>3}: {row['fps']:9.1f} frames/s  "
            f"({row['frames']} frames in {row['seconds']:.2f} s; first call {row['first_call_s']:.1f} s)")
    base = None
    for clips in args.clips:
      row = measure(gen, 1, clips * gen.window / gen.fps, args.repeats)
      row.update(mode="clips", clips=clips, s_per_frame=row["seconds"] / row["frames"])
      base = base or row["s_per_frame"]
      row["ratio_to_first"] = row["s_per_frame"] / base
      rows.append(row)
      print(f"{r:>4} px  {clips:>4} clips: {1000 * row['s_per_frame']:9.2f} ms per frame  "
            f"(x{row['ratio_to_first']:.3f} the first; {row['frames']} frames)")
    if args.stream:
      row = measure_stream(gen, args.seconds, args.repeats)
      rows.append(row)
      print(f"{r:>4} px  stream   : {row['fps']:9.1f} frames/s  ({row['chunk_frames']}-frame "
            f"chunks of {row['chunk_duration_ms']:.0f} ms made in {row['chunk_ms']:.1f} ms; "
            f"first chunk {row['first_call_s']:.1f} s)")
  from talkjax.parallel import peak_device_bytes
  device = jax.devices()[0]
  peak = peak_device_bytes()
  if peak is not None:
    print(f"peak device memory: {peak / 2**30:.2f} GiB (the allocator's high-water mark, all "
          "runs above)")
  result = {"config": args.config, "device": device.device_kind, "devices": jax.device_count(),
            "mesh": dict(gen.mesh.shape),
            "platform": device.platform, "seconds_of_audio": args.seconds,
            "weights": args.checkpoint or "random", "peak_device_bytes": peak, "results": rows}
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)
  return 0
