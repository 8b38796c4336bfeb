"""`talkjax bench serve`: a bounded load test of `talkjax serve`, beside `talkjax sample
--manifest` on the same requests, in one run.

The server runs on a loopback port in this process with the model loaded once; `--clients`
client threads send `--requests` requests between them (each: upload, poll, download the
mp4) and the test stops by itself when they are all answered or after `--timeout` seconds.
The baseline is the manifest path of `talkjax sample` (Pipeline.run with the mp4 writer, the
same batch size) on the same requests, with the same Pipeline, so both use the same compiled
programs; every batch shape either path uses is compiled before anything is timed.
Reported: throughput (requests/s and seconds of video per second), latency p50/p95/max
(upload to downloaded mp4), batch sizes, refusals, and memory (the process's peak resident
set, and the accelerator's peak where it reports one).
"""

from __future__ import annotations

import json
import pathlib
import resource
import tempfile
import threading
import time

import numpy as np

EXAMPLES = """\
examples:
  talkjax bench serve                                        # the shipped model, 200 requests
  talkjax bench serve --requests 200 --clients 16 --json serve.json
  talkjax bench serve --checkpoint runs/ifmdm_tiny_stage2 --seconds 1.2 2.4 --max-batch 8
"""


def add_arguments(parser):
  parser.add_argument("--checkpoint", default="demo",
                      help="the model to serve (default: demo, the model talkjax ships)")
  parser.add_argument("--requests", type=int, default=200, help="requests in all (default 200)")
  parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
  parser.add_argument("--seconds", type=float, nargs="+", default=[1.2, 2.4],
                      help="audio lengths, used in turn (default 1.2 2.4: two buckets)")
  parser.add_argument("--max-batch", type=int, default=8, help="the server's --max-batch and "
                      "the manifest's --batch-size (default 8)")
  parser.add_argument("--max-wait-ms", type=float, default=200, help="the server's (default 200)")
  parser.add_argument("--crop", default="auto", choices=["auto", "center", "face", "none"])
  parser.add_argument("--timeout", type=float, default=1800,
                      help="the load test stops after this many seconds (default 1800)")


def _inputs(folder: pathlib.Path, seconds: list[float], count: int) -> list[tuple[str, str, float]]:
  """SynthTalk portraits and speech, one pair per identity and length, as PNG + WAV files."""
  import soundfile
  from PIL import Image
  from talkjax_datasets.synthtalk.clip import make_clip
  from talkjax_datasets.synthtalk.spec import BuildSpec
  pairs = []
  for i in range(count):
    length = seconds[i % len(seconds)]
    clip = make_clip(BuildSpec(identities=count, clips=count, seconds=length, resolution=128,
                               seed=i), i)
    image, audio = folder / f"face_{i}.png", folder / f"speech_{i}.wav"
    Image.fromarray(clip["frames"][0]).save(image)
    soundfile.write(audio, clip["audio"], 16000)
    pairs.append((str(image), str(audio), length))
  return pairs


def _percentiles(values) -> dict:
  if not values:
    return {"p50_s": None, "p95_s": None, "max_s": None}
  v = np.asarray(values)
  return {"p50_s": float(np.percentile(v, 50)), "p95_s": float(np.percentile(v, 95)),
          "max_s": float(v.max())}


def _peak_rss() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # Linux: kB


def _warm_up(pipe, pairs, max_batch: int) -> float:
  """Compiles every batch shape the server (powers of two) and the manifest may use."""
  from talkjax.pipelines.pipeline import Request
  from talkjax.serve.jobs import batch_rows
  started = time.time()
  by_bucket = {}
  for image, audio, _ in pairs:
    p = pipe.prepare(Request(image, audio))
    by_bucket.setdefault(pipe.bucket(p), p)
  rows = sorted({batch_rows(n, max_batch) for n in range(1, max_batch + 1)} | {max_batch})
  for p in by_bucket.values():
    for size in rows:
      list(pipe.sample_batch([p], size))
  return time.time() - started


def _manifest(pipe, requests, out: pathlib.Path) -> dict:
  """`talkjax sample --manifest`'s path: Pipeline.run writing each video as an mp4."""
  from talkjax.pipelines.writing import ResultWriter
  sink = lambda r: ResultWriter(out / f"{r.request.name}.mp4", r.fps, audio=r.audio,
                                track=r.track)
  started = time.time()
  results = list(pipe.run(requests, progress=False, sink=sink))
  wall = time.time() - started
  done = [r for r in results if getattr(r, "files", None)]
  return {"requests": len(requests), "done": len(done), "wall_s": wall,
          "requests_per_s": len(done) / wall,
          "video_s_per_s": sum(r.length / r.fps for r in done) / wall}


def _load(service, pairs, args) -> dict:
  import httpx
  from talkjax.serve.server import running
  latencies, refused, failures, lock = [], [0], [], threading.Lock()
  counter = iter(range(args.requests))
  deadline = time.time() + args.timeout
  video_seconds = [0.0]

  def client():
    with httpx.Client(timeout=120) as http:
      while time.time() < deadline:
        with lock:
          index = next(counter, None)
        if index is None:
          return
        image, audio, _ = pairs[index % len(pairs)]
        started = time.time()
        try:
          while True:
            with open(image, "rb") as fi, open(audio, "rb") as fa:
              r = http.post(f"{url}/jobs", files={"image": ("face.png", fi), "audio": ("speech.wav", fa)},
                            data={"seed": str(index), "name": f"r{index:04d}"})
            if r.status_code != 503:
              break
            with lock:
              refused[0] += 1
            time.sleep(float(r.headers.get("Retry-After", 1)))
          if r.status_code != 202:
            raise RuntimeError(f"{r.status_code}: {r.text}")
          job = r.json()
          while job["status"] in ("queued", "running") and time.time() < deadline:
            job = http.get(f"{url}/jobs/{job['id']}", params={"wait": 30}).json()
          if job["status"] != "done":
            raise RuntimeError(job.get("error", job["status"]))
          video = http.get(f"{url}{job['video']}")
          if video.status_code != 200 or not video.content:
            raise RuntimeError(f"video: {video.status_code}")
          with lock:
            latencies.append(time.time() - started)
            video_seconds[0] += job["seconds"]
        except (httpx.HTTPError, RuntimeError) as e:
          with lock:
            failures.append(f"request {index}: {e}")

  with running(service) as url:
    started = time.time()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
    for t in threads:
      t.start()
    for t in threads:
      t.join(max(0.0, deadline - time.time()) + 130)
    wall = time.time() - started
    health = service.health()
  return {"requests": args.requests, "done": len(latencies), "failed": len(failures),
          "not_sent": args.requests - len(latencies) - len(failures), "refused_503": refused[0],
          "wall_s": wall, "requests_per_s": len(latencies) / wall,
          "video_s_per_s": video_seconds[0] / wall, **_percentiles(latencies),
          "batch_sizes": health["counters"]["batch_sizes"],
          "compiled_buckets": len(health["compiled_buckets"]), "first_failures": failures[:5]}


def run(args) -> int:
  import jax
  from talkjax.errors import TalkjaxError
  from talkjax.parallel import peak_device_bytes
  from talkjax.pipelines.pipeline import Pipeline, Request
  from talkjax.serve.jobs import Service
  if args.requests < 1 or args.clients < 1 or args.max_batch < 1 or args.timeout <= 0:
    raise TalkjaxError("--requests, --clients and --max-batch must be at least 1 and --timeout "
                       "positive", fix="e.g. --requests 200 --clients 16")
  if any(s <= 0 for s in args.seconds):
    raise TalkjaxError(f"--seconds {args.seconds} must be positive", fix="e.g. --seconds 1.2 2.4")
  checkpoint = args.checkpoint
  if checkpoint == "demo":
    from talkjax.commands.demo import shipped_model
    checkpoint = shipped_model()
  with tempfile.TemporaryDirectory(prefix="talkjax-bench-serve-") as tmp:
    tmp = pathlib.Path(tmp)
    pairs = _inputs(tmp, list(args.seconds), min(8, args.requests))
    pipe = Pipeline.load(checkpoint, crop=args.crop, batch_size=args.max_batch)
    rss_loaded = _peak_rss()
    compile_s = _warm_up(pipe, pairs, args.max_batch)
    print(f"model loaded; every batch shape compiled in {compile_s:.1f} s", flush=True)
    requests = [Request(pairs[i % len(pairs)][0], pairs[i % len(pairs)][1], seed=i,
                        name=f"r{i:04d}") for i in range(args.requests)]
    (tmp / "manifest_out").mkdir()
    manifest = _manifest(pipe, requests, tmp / "manifest_out")
    print(f"talkjax sample --manifest : {manifest['requests_per_s']:7.2f} requests/s "
          f"({manifest['video_s_per_s']:.2f} s of video per s; {manifest['done']} of "
          f"{manifest['requests']} in {manifest['wall_s']:.1f} s)", flush=True)
    rss_before = _peak_rss()
    service = Service(pipe, tmp / "jobs", max_batch=args.max_batch,
                      max_wait_ms=args.max_wait_ms, max_queue=max(64, args.clients))
    (tmp / "jobs").mkdir()
    served = _load(service, pairs, args)
    rss_after = _peak_rss()
  ratio = manifest["requests_per_s"] / served["requests_per_s"] if served["done"] else None
  print(f"talkjax serve ({args.clients} clients): {served['requests_per_s']:7.2f} requests/s "
        f"({served['video_s_per_s']:.2f} s of video per s; {served['done']} of {args.requests} "
        f"in {served['wall_s']:.1f} s; {served['failed']} failed, {served['refused_503']} "
        "told to retry)")
  if served["done"]:
    print(f"latency (upload -> mp4 downloaded): p50 {served['p50_s']:.2f} s, p95 "
          f"{served['p95_s']:.2f} s, max {served['max_s']:.2f} s; batch sizes "
          f"{served['batch_sizes']}")
    print(f"manifest / serve throughput: {ratio:.2f}x (the target is at most 1.5x)")
  peak_device = peak_device_bytes()
  print(f"peak resident memory: {rss_after / 2**30:.2f} GiB (model loaded: "
        f"{rss_loaded / 2**30:.2f}, before the load test: {rss_before / 2**30:.2f})"
        + (f"; peak device memory {peak_device / 2**30:.2f} GiB" if peak_device else ""))
  for line in served["first_failures"]:
    print(f"  failed: {line}")
  device = jax.devices()[0]
  result = {"checkpoint": str(checkpoint), "device": device.device_kind,
            "platform": device.platform, "devices": jax.local_device_count(),
            "clients": args.clients, "max_batch": args.max_batch,
            "max_wait_ms": args.max_wait_ms, "seconds_of_audio": list(args.seconds),
            "compile_s": compile_s, "manifest": manifest, "serve": served,
            "manifest_over_serve": ratio, "peak_rss_bytes": rss_after,
            "rss_before_load_bytes": rss_before, "peak_device_bytes": peak_device}
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)
  return 0 if served["done"] == args.requests else 1
