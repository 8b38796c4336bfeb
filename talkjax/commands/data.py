"""Build and inspect datasets.

`build synthtalk` writes SynthTalk, the built-in procedural talking-head dataset (faces,
synthetic speech, emotion, head motion, blinks; optional dyadic conversations), as a TFDS
array_record dataset with train/val/test splits of disjoint identities. It builds in
seconds at 64 px. `preview` writes a PNG contact sheet and a short mp4 with sound of a few
clips so you can look at (and listen to) the data. MEAD, HDTF and DyConv builders read the
real datasets' folder layouts (not in this version).
"""

from __future__ import annotations

from talkjax.commands import add_subcommand, missing
from talkjax.errors import TalkjaxError

EXAMPLES = """\
examples:
  talkjax data build synthtalk --out data/synthtalk --identities 16 --clips 64 --seconds 2 --resolution 64
  talkjax data build synthtalk --out data/dyadic --dyadic --seconds 6
  talkjax data preview --data data/synthtalk --out preview/   # contact_sheet.png + preview.mp4
"""

BUILD_EXAMPLES = """\
  talkjax data build synthtalk --out data/st64 --identities 16 --clips 64 --resolution 64
  talkjax data build synthtalk --out data/st128 --identities 100 --clips 1000 --resolution 128
  talkjax data build synthtalk --out data/dyadic --dyadic --seconds 6 --seed 3
"""

PREVIEW_EXAMPLES = """\
  talkjax data preview --data data/st64 --out preview/
  talkjax data preview --data data/dyadic --split test --clips 3 --out preview/
"""


def add_arguments(parser):
  actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
  build = add_subcommand(
      actions, "build", help="build a dataset into an output folder",
      description="Build a dataset. SynthTalk is generated here; 1000 clips of 2 s at 128 px "
                  "take about a minute on 2 cores.", examples=BUILD_EXAMPLES)
  build.add_argument("dataset", help="dataset name: synthtalk (mead, hdtf, dyconv: not yet)")
  build.add_argument("--out", required=True, help="output folder (TFDS data_dir)")
  build.add_argument("--identities", type=int, default=16,
                     help="number of people; ~10%% each go to val and test (default 16)")
  build.add_argument("--clips", type=int, default=64,
                     help="number of clips, spread over identities (default 64)")
  build.add_argument("--seconds", type=float, default=2.0, help="clip length (default 2)")
  build.add_argument("--resolution", type=int, default=64,
                     help="frame size in px, multiple of 8 in 64..512 (default 64)")
  build.add_argument("--fps", type=int, default=25, help="frames per second (default 25)")
  build.add_argument("--dyadic", action="store_true",
                     help="conversations: agent + partner audio, speaking and listening turns")
  build.add_argument("--seed", type=int, default=0,
                     help="random seed; a different seed gives different identities")
  build.add_argument("--image-format", choices=["jpeg", "png"], default="jpeg",
                     help="how frames are stored (jpeg: small and fast; png: lossless)")
  build.add_argument("--workers", type=int, default=0,
                     help="generator processes (default: all cores)")
  build.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")

  preview = add_subcommand(
      actions, "preview", help="contact sheet PNG + short mp4 with sound of a few clips",
      examples=PREVIEW_EXAMPLES)
  preview.add_argument("--data", required=True, help="a built SynthTalk folder")
  preview.add_argument("--out", required=True, help="folder for contact_sheet.png and preview.mp4")
  preview.add_argument("--split", default="train", help="train, val or test (default train)")
  preview.add_argument("--clips", type=int, default=4, help="how many clips (default 4)")


def run(args):
  if args.action == "build":
    return _build(args)
  return _preview(args)


def _build(args):
  if args.dataset != "synthtalk":
    if args.dataset in ("mead", "hdtf", "dyconv"):
      raise missing("data build " + args.dataset, f"the {args.dataset} builder",
                    "the real-dataset builders (datasets/)")
    raise TalkjaxError(f"unknown dataset {args.dataset!r}",
                       fix="use one of: synthtalk, mead, hdtf, dyconv")
  if args.workers < 0:
    raise TalkjaxError(f"--workers must be >= 0, got {args.workers}")
  from talkjax_datasets.synthtalk.builder import build
  from talkjax_datasets.synthtalk.spec import BuildSpec
  spec = BuildSpec(identities=args.identities, clips=args.clips, seconds=args.seconds,
                   resolution=args.resolution, fps=args.fps, dyadic=args.dyadic,
                   seed=args.seed, image_format=args.image_format).validate()
  path = build(spec, args.out, overwrite=args.overwrite, workers=args.workers or None)
  seconds = (path / "build_seconds.txt").read_text().strip()
  print(f"built {spec.clips} clips ({spec.config_name()}) in {seconds} s -> {path}")
  return 0


def _preview(args):
  from talkjax_datasets.synthtalk.preview import write_preview
  sheet, video = write_preview(args.data, args.out, split=args.split, clips=args.clips)
  print(f"wrote {sheet} and {video}")
  return 0
