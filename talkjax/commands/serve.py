"""Serve a model over HTTP: a JSON API and a web page (drop a portrait and a sound file,
watch the video).

Requests arrive one by one; the server checks each at once (a bad one gets a 4xx with a
one-line reason), queues it, and a worker samples the queued requests of one bucket (same
length in chunks, same compiled options) as one sharded batch over every device of this
host: up to --max-batch requests, waiting at most --max-wait-ms for more after the oldest.
A full queue answers 503 with a Retry-After hint. Files live in a private temporary folder
and are deleted --retention seconds after a job finished (and when the server stops).

The API (details in talkjax/serve/README.md):
  POST /jobs              multipart: image, audio [, partner_audio, style_video] files;
                          emotion, seed,
                          options (a JSON object of sampling options), name  -> 202 + job
  GET  /jobs/ID[?wait=S]  status, progress (frames done of frames), warnings, error
                          (?wait: answer when it has finished, or after S s)
  GET  /jobs/ID/video     the mp4 (H.264 + AAC of the uploaded sound)
  DELETE /jobs/ID         forget a job and delete its files
  GET  /health            queue, devices, batch counters, compiled buckets
  GET  /info              the model's inputs, options and this server's limits
  GET  /                  the web page
"""

from __future__ import annotations

import sys

from talkjax.errors import TalkjaxError

EXAMPLES = """\
examples:
  talkjax serve --checkpoint runs/ifmdm_tiny_stage2          # then open http://127.0.0.1:8000
  talkjax serve --checkpoint demo                            # the model talkjax ships
  talkjax serve --checkpoint runs/memo_converted --max-batch 4 --max-seconds 120 --mesh fsdp=-1
  curl -F image=@face.png -F audio=@speech.wav -F seed=3 http://127.0.0.1:8000/jobs
  curl http://127.0.0.1:8000/jobs/ID?wait=30    # answers once it is done (or after 30 s)
  curl -o out.mp4 http://127.0.0.1:8000/jobs/ID/video
"""


def add_arguments(parser):
  parser.add_argument("--checkpoint", required=True,
                      help="a generator's training folder, a model file, a converted weights "
                           "folder, or 'demo' (the model talkjax ships)")
  parser.add_argument("--host", default="127.0.0.1",
                      help="address to listen on (default 127.0.0.1: this machine only; the "
                           "server has no authentication)")
  parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
  parser.add_argument("--max-batch", type=int, default=8,
                      help="requests sampled in one call at most (default 8)")
  parser.add_argument("--max-wait-ms", type=float, default=200,
                      help="how long the oldest queued request waits for others of its bucket "
                           "to join its batch (default 200)")
  parser.add_argument("--max-queue", type=int, default=64,
                      help="requests waiting at most; more get 503 + Retry-After (default 64)")
  parser.add_argument("--max-seconds", type=float, default=60,
                      help="longest audio accepted, in seconds (default 60)")
  parser.add_argument("--max-upload-mb", type=float, default=32,
                      help="largest request body, in MB (default 32)")
  parser.add_argument("--retention", type=float, default=600,
                      help="seconds a finished job's video is kept (default 600)")
  parser.add_argument("--crop", default="auto", choices=["auto", "center", "face", "none"],
                      help="how portraits become squares (see talkjax sample --help)")
  parser.add_argument("--mesh", nargs="+", default=[], metavar="AXIS=SIZE",
                      help="device mesh sizes over this host's devices (see talkjax sample)")
  parser.add_argument("--separate-vocals", nargs="?", const="", default=None, metavar="MODEL",
                      help="isolate the voice first (see talkjax sample --help)")


def run(args):
  from talkjax.serve.server import build_service, is_loopback, serve
  if not 0 <= args.port <= 65535:
    raise TalkjaxError(f"--port {args.port} is not a port", fix="give 1..65535")
  if args.max_upload_mb <= 0:
    raise TalkjaxError("--max-upload-mb must be positive", fix="e.g. --max-upload-mb 32")
  checkpoint = args.checkpoint
  if checkpoint == "demo":
    from talkjax.commands.demo import shipped_model
    checkpoint = shipped_model()
  from talkjax.commands.sample import vocal_separator
  args.checkpoint = checkpoint
  service = build_service(checkpoint, crop=args.crop, mesh=args.mesh,
                          separator=vocal_separator(args), max_batch=args.max_batch,
                          max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
                          max_seconds=args.max_seconds, retention_s=args.retention)
  if not is_loopback(args.host):
    print(f"talkjax serve: warning: listening on {args.host}, reachable from other machines; "
          "the server has no authentication", file=sys.stderr)
  devices = service.pipe.sampler.mesh.devices.size
  print(f"talkjax serve: {service.pipe.sampler.hook.config.family} model from {checkpoint} on "
        f"{devices} device(s); open http://{args.host}:{args.port}/ (Ctrl-C stops)",
        file=sys.stderr)
  serve(service, args.host, args.port, max_upload_bytes=int(args.max_upload_mb * 2**20))
  return 0
