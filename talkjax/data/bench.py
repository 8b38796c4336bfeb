"""`talkjax bench data`: how fast a built dataset feeds training, and how fast raw files
build.

Delivery: windows ("clips" of --window frames, decoded to float32 with their audio) per
second through the training loader (Grain, this host's shard of a global batch) with 1, 2
and 4 worker processes, after a warm-up. Build: with --raw, the raw folder is built first
into a temporary folder (or --out) and the build's own throughput is reported: source
minutes turned into training data per minute of wall time.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

EXAMPLES = """\
  talkjax bench data --data data/hdtf --json data_bench.json
  talkjax bench data --raw ~/HDTF --kind hdtf --resolution 512 --build-workers 8
  talkjax bench data --data data/mead --loader-workers 1 2 4 8 --window 16 --batch 32
"""


def add_arguments(parser):
  parser.add_argument("--data", help="a built dataset folder (any kind)")
  parser.add_argument("--raw", help="build this raw folder first and time the build")
  parser.add_argument("--kind", choices=("mead", "hdtf", "dyconv", "clips"), default="clips",
                      help="the layout of --raw (default clips)")
  parser.add_argument("--out", help="where --raw is built (default: a temporary folder)")
  parser.add_argument("--resolution", type=int, default=512, help="build resolution (512)")
  parser.add_argument("--build-workers", type=int, default=0,
                      help="build processes (default: all cores)")
  parser.add_argument("--split", default="train")
  parser.add_argument("--window", type=int, default=16, help="frames per window (16)")
  parser.add_argument("--batch", type=int, default=8, help="global batch (8)")
  parser.add_argument("--loader-workers", type=int, nargs="+", default=[1, 2, 4],
                      help="Grain worker processes to try (1 2 4)")
  parser.add_argument("--seconds", type=float, default=20.0,
                      help="timed seconds per setting, after the warm-up (20)")


def _build(args) -> tuple[str, dict]:
  import importlib
  from talkjax_datasets.real.options import BuildOptions
  out = args.out or tempfile.mkdtemp(prefix="talkjax-bench-data-")
  builder = importlib.import_module(f"talkjax_datasets.{args.kind}.builder")
  start = time.perf_counter()
  path = builder.build(args.raw, out, BuildOptions(resolution=args.resolution),
                       workers=args.build_workers or None, overwrite=bool(args.out))
  seconds = time.perf_counter() - start
  report = json.loads(open(os.path.join(out, "build_report.json")).read())
  written = sum(report["written"].values())
  return str(path), {"kind": args.kind, "raw": args.raw, "clips": written,
                     "video_minutes": round(report["hours"] * 60, 3),
                     "wall_seconds": round(seconds, 2),
                     "source_minutes_per_minute": report["source_minutes_per_minute"],
                     "workers": args.build_workers or os.cpu_count(),
                     "skipped": report["skipped"]}


def _delivery(path, args, workers: int) -> dict:
  """One setting, measured in a fresh process: no earlier setting's workers are around, and
  stopping them afterwards cannot hang the benchmark."""
  import subprocess
  settings = {"path": str(path), "split": args.split, "window": args.window,
              "batch": args.batch, "workers": workers, "seconds": args.seconds}
  done = subprocess.run([sys.executable, "-c", "import sys, json; from talkjax.data.bench "
                         "import measure; measure(**json.loads(sys.argv[1]))",
                         json.dumps(settings)], capture_output=True, text=True,
                        stdin=subprocess.DEVNULL, timeout=args.seconds + 600)
  if done.returncode != 0:
    from talkjax.errors import TalkjaxError
    raise TalkjaxError(f"the loader with {workers} workers failed: {done.stderr[-1500:]}")
  return json.loads(done.stdout.strip().splitlines()[-1])


def measure(path, split, window, batch, workers, seconds) -> dict:
  from talkjax.data.loader import make_loader
  from talkjax.data.prepare import open_clips
  from talkjax.data.windows import ClipWindows
  source = ClipWindows(open_clips(path, split), window=window)
  loader = make_loader(source, global_batch_size=batch, seed=0, process_index=0,
                       process_count=1, worker_count=workers)
  batches = iter(loader)
  for _ in range(2 * max(1, workers)):     # warm-up: workers started, first batches decoded
    next(batches)
  count, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    next(batches)
    count += 1
  elapsed = time.perf_counter() - start
  result = {"workers": workers, "batches": count, "seconds": round(elapsed, 2),
            "clips_per_s": round(count * batch / elapsed, 2),
            "frames_per_s": round(count * batch * window / elapsed, 1)}
  print(json.dumps(result), flush=True)
  # Leave without Grain's orderly shutdown (it can block on a worker stuck on a full queue);
  # the workers are stopped here instead, so none outlives the measurement.
  import multiprocessing
  for child in multiprocessing.active_children():
    child.kill()
  os._exit(0)


def run(args) -> int:
  from talkjax.errors import TalkjaxError
  if not args.data and not args.raw:
    raise TalkjaxError("nothing to measure", fix="pass --data BUILT_FOLDER or --raw RAW_FOLDER")
  results = {"host_cpus": os.cpu_count(), "window": args.window, "batch": args.batch}
  path = args.data
  if args.raw:
    path, results["build"] = _build(args)
    print(f"build: {results['build']['source_minutes_per_minute']} source min/min "
          f"({results['build']['clips']} clips, {results['build']['wall_seconds']} s)")
  from talkjax.data.prepare import open_clips
  clips = open_clips(path, args.split)
  results["data"] = str(clips.path)
  results["resolution"] = int(clips.meta.get("resolution", 0))
  results["delivery"] = []
  for workers in args.loader_workers:
    row = _delivery(path, args, workers)
    results["delivery"].append(row)
    print(f"workers {workers}: {row['clips_per_s']} clips/s ({row['frames_per_s']} frames/s "
          f"at {results['resolution']} px)", flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=2)
  json.dump(results, sys.stdout, indent=2)
  print()
  return 0
