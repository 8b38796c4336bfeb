"""`talkjax bench audio`: seconds of compute per minute of audio, per stage.

Stages: loading (decode a 44.1 kHz stereo wav + resample + loudness), log-mel on the host
(librosa, the reference path), log-mel and MFCC in JAX (jitted, on the default device), and
each encoder (the small trainable encoder and wav2vec2, random weights unless --wav2vec2
points at a converted folder). JAX stages are timed after a warm-up call, so compile time
is reported separately. Every number is the median of --repeats runs, scaled to 60 s.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time

EXAMPLES = """\
  talkjax bench audio --json audio.json
  talkjax bench audio --seconds 20 --encoders small
  talkjax bench audio --wav2vec2 weights/wav2vec2-base --dtype bfloat16
"""


def add_arguments(parser):
  parser.add_argument("--seconds", type=float, default=60.0,
                      help="length of the test audio (results are scaled to 1 minute)")
  parser.add_argument("--repeats", type=int, default=3, help="timed runs per stage (median)")
  parser.add_argument("--encoders", default="small,wav2vec2-base",
                      help="comma list of: small, wav2vec2-base, wav2vec2-large")
  parser.add_argument("--wav2vec2", default=None,
                      help="converted wav2vec2 folder to time instead of random base weights")
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                      help="encoder compute dtype")


def _median_time(fn, repeats):
  fn()  # warm-up: imports, caches, file system
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _jax_stage(fn, args, repeats):
  import jax
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  compile_s = time.perf_counter() - start  # first call: trace + compile + one run
  return _median_time(lambda: jax.block_until_ready(fn(*args)), repeats), compile_s


def _encoders(names, w2v_folder, dtype):
  from talkjax.audio.encoder import AudioEncoder, AudioEncoderConfig
  from talkjax.audio.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model, load_pretrained
  for name in names:
    if name == "small":
      yield name, AudioEncoder(AudioEncoderConfig(max_positions=8192), dtype=dtype), None
    elif name in ("wav2vec2-base", "wav2vec2-large"):
      if w2v_folder:
        config, params = load_pretrained(w2v_folder)
        yield f"wav2vec2 ({os.path.basename(os.path.normpath(w2v_folder))})", \
            Wav2Vec2Model(config, dtype=dtype), params
      else:
        config = Wav2Vec2Config.base() if name == "wav2vec2-base" else Wav2Vec2Config.large()
        yield name, Wav2Vec2Model(config, dtype=dtype), None


ENCODERS = ("small", "wav2vec2-base", "wav2vec2-large")


def run(args) -> int:
  names = [n.strip() for n in args.encoders.split(",") if n.strip()]
  unknown = [n for n in names if n not in ENCODERS]
  if unknown:
    from talkjax.errors import TalkjaxError
    raise TalkjaxError(f"unknown encoder {unknown[0]!r}", fix="use --encoders " + ",".join(ENCODERS))
  import jax
  import jax.numpy as jnp
  import numpy as np
  import soundfile as sf

  from talkjax.audio import mel
  from talkjax.audio.load import load_audio

  scale = 60.0 / args.seconds
  rng = np.random.default_rng(0)
  n44 = int(args.seconds * 44100)
  stereo = (0.1 * rng.standard_normal((n44, 2))).astype(np.float32)
  results = {"device": str(jax.devices()[0].platform), "device_kind": jax.devices()[0].device_kind,
             "jax": jax.__version__, "cpu_count": os.cpu_count(),
             # other work on the machine inflates CPU numbers; the load says how much
             "load_average_1min": os.getloadavg()[0],
             "audio_seconds": args.seconds, "unit": "seconds of compute per minute of audio",
             "stages": {}}
  stages = results["stages"]

  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "bench.wav")
    sf.write(path, stereo, 44100, subtype="PCM_16")
    samples = load_audio(path)
    stages["load (44.1 kHz stereo wav -> 16 kHz mono)"] = {
        "s_per_min": _median_time(lambda: load_audio(path), args.repeats) * scale}
  stages["log-mel syncnet, librosa (host)"] = {"s_per_min": _median_time(
      lambda: mel.log_mel_reference(samples, mel.SYNCNET_MEL), args.repeats) * scale}
  x = jnp.asarray(samples)[None]
  for name, config in (("syncnet", mel.SYNCNET_MEL), ("default", mel.DEFAULT_MEL)):
    t, c = _jax_stage(jax.jit(lambda a, cfg=config: mel.log_mel_jax(a, cfg)), (x,), args.repeats)
    stages[f"log-mel {name}, JAX"] = {"s_per_min": t * scale, "compile_s": c}
  t, c = _jax_stage(jax.jit(lambda a: mel.mfcc_jax(a, mel.SYNCNET_MEL)), (x,), args.repeats)
  stages["mfcc syncnet, JAX"] = {"s_per_min": t * scale, "compile_s": c}

  dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32
  for name, model, params in _encoders(names, args.wav2vec2, dtype):
    if params is None:
      params = jax.jit(model.init)(jax.random.PRNGKey(0), x[:, :16000])["params"]
    apply = jax.jit(lambda p, a, m=model: m.apply({"params": p}, a)["last_hidden_state"])
    t, c = _jax_stage(apply, (params, x), args.repeats)
    n_params = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(params))
    stages[f"encoder {name}"] = {"s_per_min": t * scale, "compile_s": c, "params": n_params,
                                 "dtype": args.dtype}

  print(f"audio bench on {results['device']} ({results['device_kind']}), "
        f"{args.seconds:g} s of audio, median of {args.repeats}, "
        f"load average {results['load_average_1min']:.1f} on {results['cpu_count']} cores")
  print(f"{'stage':48s} {'s / min audio':>14s} {'compile s':>10s}")
  for name, r in stages.items():
    compile_s = f"{r['compile_s']:.2f}" if "compile_s" in r else "-"
    print(f"{name:48s} {r['s_per_min']:14.3f} {compile_s:>10s}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=2)
    print(f"wrote {args.json}")
  return 0
