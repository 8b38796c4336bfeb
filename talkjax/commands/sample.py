"""Turn a portrait image and speech audio into a talking-head mp4.

One request with --image/--audio, or many with --manifest (a JSONL file, one request per
line, see talkjax/pipelines/manifest.py); manifest requests are bucketed by length and
sampled as sharded batches over every device, compiling once per bucket. Each request gets
a result line (and its warnings); bad requests are reported and skipped, the rest still
run. Everything that can be checked is checked before sampling starts: options, inputs,
and that every output can be written. Frames are written as they are made, so a long
video needs no more memory than a short one; its sound is the user's own audio file.
"""

from __future__ import annotations

import pathlib
import sys

from talkjax.errors import TalkjaxError

MAX_BATCH = 1024

EXAMPLES = """\
examples:
  talkjax sample --checkpoint runs/ifmdm_tiny_stage2 --image face.png --audio speech.wav --out out.mp4
  talkjax sample --checkpoint model.msgpack --image face.jpg --audio talk.m4a --out out.mp4 \\
      --set std_scale=1.5 guidance=3 --gif --png
  talkjax sample ... --set mean=none std=absolute std_value=0.3     (the paper's std knob)
  talkjax sample --checkpoint runs/dyadic_stage2 --image face.png --audio me.wav \\
      --partner-audio you.wav --style-video how_they_nod.mp4 --out talk.mp4
  talkjax sample --checkpoint runs/ifmdm_tiny_stage2 --manifest requests.jsonl --out results/
  (a manifest line: {"image": "a.png", "audio": "a.wav", "seed": 1, "options": {"mean": "previous"}})
  talkjax sample --checkpoint runs/big --manifest requests.jsonl --out results/ --mesh data=1 fsdp=-1
  (parameters sharded over this host's devices, by the rules the model was trained with)
"""


def add_arguments(parser):
  parser.add_argument("--checkpoint", required=True,
                      help="a generator's training folder (IF-MDM: stage 2), a model file, "
                           "or a folder of converted weights (talkjax convert memo)")
  parser.add_argument("--image", help="portrait image (any format and size Pillow reads)")
  parser.add_argument("--audio", help="driving speech (wav, flac, mp3, m4a, ogg)")
  parser.add_argument("--partner-audio", help="the partner's track (dyadic families)")
  parser.add_argument("--emotion", help="emotion name, e.g. happy (families that take one)")
  parser.add_argument("--style-video", metavar="VIDEO",
                      help="a reference clip whose motion style (how the head moves) the "
                           "video takes: its first frames, cropped like the portrait "
                           "(models trained with a style encoder)")
  parser.add_argument("--seed", type=int, default=0, help="noise seed, 0..2**32-1 (default 0)")
  parser.add_argument("--manifest", help="JSONL file of requests instead of --image/--audio")
  parser.add_argument("--out", required=True, help="output .mp4 (a folder with --manifest)")
  parser.add_argument("--set", dest="options", nargs="+", default=[], metavar="NAME=VALUE",
                      help="sampling options (IF-MDM: steps, guidance, mean=image|previous|"
                           "none, std=scale|absolute|none, std_scale (x the data's window "
                           "std), std_value (absolute std))")
  parser.add_argument("--crop", default="auto", choices=["auto", "center", "face", "none"],
                      help="how the portrait becomes a square: auto (the default: around the "
                           "largest face, framed as the model's training data; the whole image "
                           "with a warning when no face is found), face (no face is an error), "
                           "center (the centred square), none (resize the whole image)")
  parser.add_argument("--batch-size", type=int, default=8,
                      help=f"requests per sharded call, 1..{MAX_BATCH} (manifest; default 8)")
  parser.add_argument("--png", action="store_true", help="also write PNG frames (a folder)")
  parser.add_argument("--gif", action="store_true", help="also write a GIF preview")
  parser.add_argument("--view-size", type=int, default=0,
                      help="resize written frames to this many pixels, 16..2048 (default 0: "
                           "the model's size)")
  parser.add_argument("--separate-vocals", nargs="?", const="", default=None, metavar="MODEL",
                      help="isolate the voice first with an MDX-Net ONNX model (MEMO's release: "
                           "Kim_Vocal_2.onnx; needs onnxruntime); without MODEL, the one "
                           "`talkjax convert memo` copied into the checkpoint's separator/")
  parser.add_argument("--mesh", nargs="+", default=[], metavar="AXIS=SIZE",
                      help="device mesh sizes (data, fsdp, tensor; one may be -1 = the rest) "
                           "over this host's devices; default: the config's mesh. Parameters "
                           "are laid out by the config's axis rules, batches split over data "
                           "x fsdp")


def vocal_separator(args):
  """The VocalSeparator --separate-vocals names (None without the flag)."""
  if args.separate_vocals is None:
    return None
  from talkjax.audio.separate import VocalSeparator
  path = args.separate_vocals
  if not path:
    found = sorted(pathlib.Path(args.checkpoint).expanduser().glob("separator/*.onnx"))
    if not found:
      raise TalkjaxError("--separate-vocals without a MODEL takes the checkpoint's "
                         "separator/*.onnx, and there is none", path=args.checkpoint,
                         fix="give the model: --separate-vocals Kim_Vocal_2.onnx")
    path = found[0]
  return VocalSeparator(path)


def parse_options(items) -> dict:
  import ast
  options = {}
  for item in items:
    if "=" not in item:
      raise TalkjaxError(f"--set expects NAME=VALUE, got {item!r}", fix="e.g. --set std_scale=1.5")
    name, value = item.split("=", 1)
    try:
      options[name] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      options[name] = value  # a bare word: a string option such as mean=previous
  return options


def _targets(requests, out: pathlib.Path, single: bool):
  """request -> its mp4 path; a request whose output another already claims, or that
  cannot be written, becomes a Failure here, before any sampling."""
  from talkjax.pipelines.pipeline import Failure, Request
  from talkjax.pipelines.writing import check_writable
  targets, owners, kept = {}, {}, []
  for r in requests:
    if not isinstance(r, Request):
      kept.append(r)
      continue
    target = pathlib.Path(r.out) if r.out else out / f"{r.name}.mp4"
    key = target.resolve()
    try:
      if target.suffix.lower() != ".mp4":
        raise TalkjaxError(f"the output {target} is not an .mp4", fix='give "out" an .mp4 name')
      if key in owners:
        raise TalkjaxError(f"writes {target}, which request {owners[key]!r} writes too",
                           fix='give each request its own "name" (or "out")')
      check_writable(target)
    except TalkjaxError as e:
      if single:
        raise
      kept.append(Failure(r.name, e.one_line(), r, e))
      continue
    owners[key] = r.name
    targets[id(r)] = target
    kept.append(r)
  return kept, targets


def run(args):
  from talkjax.pipelines.manifest import read_manifest
  from talkjax.pipelines.pipeline import Failure, Pipeline, Request
  from talkjax.pipelines.writing import ResultWriter, check_view_size
  options = parse_options(args.options)
  check_view_size(args.view_size)
  if not 1 <= args.batch_size <= MAX_BATCH:
    raise TalkjaxError(f"--batch-size {args.batch_size} is out of range",
                       fix=f"give 1..{MAX_BATCH} requests per call")
  out = pathlib.Path(args.out)
  if args.manifest:
    if args.image or args.audio or args.style_video:
      raise TalkjaxError("give either --manifest or --image/--audio, not both",
                         fix='a manifest line names its own inputs: {"image": ..., "audio": ..., '
                             '"style_video": ...}')
    if out.exists() and not out.is_dir():
      raise TalkjaxError("--out must be a folder with --manifest", path=out,
                         fix="e.g. --out results/")
    requests = read_manifest(args.manifest)
  else:
    if not (args.image and args.audio):
      raise TalkjaxError("--image and --audio are both needed (or --manifest)",
                         fix="talkjax sample --checkpoint C --image face.png --audio speech.wav --out out.mp4")
    if out.suffix.lower() != ".mp4":
      raise TalkjaxError(f"--out must end in .mp4, got {out}", fix="e.g. --out result.mp4")
    requests = [Request(args.image, args.audio, args.partner_audio, args.emotion, args.seed,
                        name=out.stem, out=str(out), style_video=args.style_video)]
  for r in requests:
    if isinstance(r, Request):
      r.knobs = {**options, **r.knobs}
  requests, targets = _targets(requests, out, single=not args.manifest)
  pipe = Pipeline.load(args.checkpoint, crop=args.crop, batch_size=args.batch_size,
                       mesh=args.mesh, separator=vocal_separator(args))

  def sink(result):
    target = targets[id(result.request)]
    return ResultWriter(target, result.fps, audio=result.audio, track=result.track,
                        png_dir=target.with_suffix("") if args.png else None,
                        gif_path=target.with_suffix(".gif") if args.gif else None,
                        view_size=args.view_size)

  failures = [r for r in requests if isinstance(r, Failure)]
  for f in failures:
    print(f"FAILED {f.name}: {f.error}", file=sys.stderr)
  written = 0
  for result in pipe.run([r for r in requests if isinstance(r, Request)],
                         progress=bool(args.manifest), sink=sink):
    if isinstance(result, Failure):
      if not args.manifest:  # one request: its error is the command's error
        raise TalkjaxError(result.error)
      failures.append(result)
      print(f"FAILED {result.name}: {result.error}", file=sys.stderr)
      continue
    for note in result.warnings:
      print(f"warning {result.name}: {note}", file=sys.stderr)
    written += 1
    sound = "your audio" if result.track else "the model's audio"
    clip = result.request.style_video if result.request is not None else None
    style = f", style of {pathlib.Path(clip).name}" if isinstance(clip, (str, pathlib.Path)) else ""
    print(f"ok {result.name}: {result.length} frames ({result.length / result.fps:.2f} s), "
          f"crop {result.crop}{style}, sound: {sound} -> {', '.join(result.files)}")
  if args.manifest or failures:
    print(f"{written} written, {len(failures)} failed", file=sys.stderr)
  if failures and not written:
    raise TalkjaxError(f"no video was written ({len(failures)} request(s) failed, see above)")
  return 1 if failures else 0
