"""Build and inspect datasets.

`build synthtalk` writes SynthTalk, the built-in procedural talking-head dataset (faces,
synthetic speech, emotion, head motion, blinks; optional dyadic conversations), as a TFDS
array_record dataset with train/val/test splits of disjoint identities. It builds in
seconds at 64 px. `build mead|hdtf|dyconv|clips --raw DIR` turns the raw files of a real
dataset (or any folder of talking clips) into the same kind of training-ready dataset:
decoded with PyAV, resampled to --fps, speech to 16 kHz mono, the face cropped with a
smoothed track and resized, frames stored as JPEG/PNG; in parallel, resumable (run the same
command again after an interruption), with a report of every input skipped and why.
`convert vico` rewrites a ViCo-style folder into the DyConv layout. `preview` writes a PNG
contact sheet and a short mp4 with sound of a few clips so you can look at (and listen to)
the data.
"""

from __future__ import annotations

from talkjax.commands import add_subcommand
from talkjax.errors import TalkjaxError

EXAMPLES = """\
examples:
  talkjax data build synthtalk --out data/synthtalk --identities 16 --clips 64 --seconds 2 --resolution 64
  talkjax data build synthtalk --out data/dyadic --dyadic --seconds 6
  talkjax data build hdtf --raw ~/HDTF --out data/hdtf --resolution 512 --workers 16
  talkjax data build mead --raw ~/MEAD --out data/mead --views front
  talkjax data preview --data data/synthtalk --out preview/   # contact_sheet.png + preview.mp4
"""

REAL_DATASETS = ("mead", "hdtf", "dyconv", "clips")

BUILD_EXAMPLES = """\
  talkjax data build synthtalk --out data/st64 --identities 16 --clips 64 --resolution 64
  talkjax data build synthtalk --out data/st128 --identities 100 --clips 1000 --resolution 128
  talkjax data build synthtalk --out data/dyadic --dyadic --seconds 6 --seed 3
  talkjax data build mead --raw ~/MEAD --out data/mead          # front view, standard split
  talkjax data build hdtf --raw ~/HDTF --out data/hdtf --workers 16
  talkjax data build dyconv --raw ~/dyconv --out data/dyconv --resolution 256
  talkjax data build clips --raw ~/my_videos --out data/mine --split-file splits.txt
  (an interrupted build resumes when the same command runs again; the report of what was
  written and skipped, per reason, is OUT/build_report.json)
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
  build.add_argument("dataset", choices=("synthtalk",) + REAL_DATASETS, metavar="DATASET",
                     help="synthtalk (generated here), or mead, hdtf, dyconv, clips (from --raw)")
  build.add_argument("--out", required=True, help="output folder (TFDS data_dir)")
  build.add_argument("--resolution", type=int, default=None,
                     help="frame size in px (synthtalk: multiple of 8 in 64..512, default 64; "
                          "real datasets: 64..1024, default 512)")
  build.add_argument("--fps", type=int, default=25, help="frames per second (default 25)")
  build.add_argument("--image-format", choices=["jpeg", "png"], default="jpeg",
                     help="how frames are stored (jpeg: small and fast; png: lossless)")
  build.add_argument("--workers", type=int, default=0,
                     help="processes (default: all cores)")
  build.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
  st = build.add_argument_group("synthtalk")
  st.add_argument("--identities", type=int, default=16,
                  help="number of people; ~10%% each go to val and test (default 16)")
  st.add_argument("--clips", type=int, default=64,
                  help="number of clips, spread over identities (default 64)")
  st.add_argument("--seconds", type=float, default=2.0, help="clip length (default 2)")
  st.add_argument("--dyadic", action="store_true",
                  help="conversations: agent + partner audio, speaking and listening turns")
  st.add_argument("--seed", type=int, default=0,
                  help="random seed (synthtalk: other people; hdtf/dyconv/clips: another "
                       "split by hash)")
  real = build.add_argument_group("real datasets (mead, hdtf, dyconv, clips)")
  real.add_argument("--raw", help="the folder of raw files in the dataset's layout "
                                  "(datasets/<name>/README.md)")
  real.add_argument("--crop", choices=("fixed", "track"), default="fixed",
                    help="fixed: one face square per clip, so head motion stays in the frame "
                         "(default); track: follow the smoothed face track")
  real.add_argument("--smooth-seconds", type=float, default=0.3,
                    help="Gaussian smoothing of the face track, seconds (default 0.3)")
  real.add_argument("--detect-every", type=int, default=5,
                    help="run the face detector on every Nth frame (default 5)")
  real.add_argument("--min-face-share", type=float, default=0.5,
                    help="skip a clip when fewer sampled frames show a face (default 0.5)")
  real.add_argument("--min-seconds", type=float, default=1.0,
                    help="skip clips shorter than this (default 1)")
  real.add_argument("--max-av-mismatch", type=float, default=0.5,
                    help="skip clips whose audio and video lengths differ by more seconds "
                         "(default 0.5)")
  real.add_argument("--segment-frames", type=int, default=50,
                    help="frames per stored record; windows may span records (default 50)")
  real.add_argument("--views", default="front",
                    help="mead: comma-separated camera views (default front)")
  real.add_argument("--val", type=float, default=0.05,
                    help="hdtf/dyconv/clips: share of videos/conversations/people for val")
  real.add_argument("--test", type=float, default=0.05, help="... and for test")
  real.add_argument("--split-file",
                    help="`NAME SPLIT` lines fixing the split (mead: speakers; hdtf: videos; "
                         "dyconv: conversations; clips: people or paths)")
  real.add_argument("--keep-staging", action="store_true",
                    help="keep OUT/.staging (per-clip results) after a finished build")

  convert = add_subcommand(
      actions, "convert", help="rewrite another dataset's layout into one talkjax builds",
      examples="  talkjax data convert vico --raw ~/ViCo --out ~/dyconv_from_vico\n"
               "  talkjax data build dyconv --raw ~/dyconv_from_vico --out data/vico\n")
  convert.add_argument("layout", choices=("vico",), help="vico: ViCo-style -> DyConv layout")
  convert.add_argument("--raw", required=True, help="the ViCo-style folder")
  convert.add_argument("--out", required=True, help="where the DyConv layout is written")
  convert.add_argument("--csv", help="the ViCo CSV (default: the only *.csv in --raw)")
  convert.add_argument("--copy", action="store_true",
                       help="copy the files (default: hard links where possible)")

  preview = add_subcommand(
      actions, "preview", help="contact sheet PNG + short mp4 with sound of a few clips",
      examples=PREVIEW_EXAMPLES)
  preview.add_argument("--data", required=True, help="a built folder (SynthTalk or a real build)")
  preview.add_argument("--out", required=True, help="folder for contact_sheet.png and preview.mp4")
  preview.add_argument("--split", default="train", help="train, val or test (default train)")
  preview.add_argument("--clips", type=int, default=4, help="how many clips (default 4)")


def run(args):
  if args.action == "build":
    return _build(args)
  if args.action == "convert":
    return _convert(args)
  return _preview(args)


def _build(args):
  if args.workers < 0:
    raise TalkjaxError(f"--workers must be >= 0, got {args.workers}")
  if args.dataset in REAL_DATASETS:
    return _build_real(args)
  if args.raw:
    raise TalkjaxError("synthtalk is generated, it reads no --raw folder",
                       fix="drop --raw, or name the dataset the folder holds (mead, hdtf, ...)")
  from talkjax_datasets.synthtalk.builder import build
  from talkjax_datasets.synthtalk.spec import BuildSpec
  spec = BuildSpec(identities=args.identities, clips=args.clips, seconds=args.seconds,
                   resolution=args.resolution or 64, fps=args.fps, dyadic=args.dyadic,
                   seed=args.seed, image_format=args.image_format).validate()
  path = build(spec, args.out, overwrite=args.overwrite, workers=args.workers or None)
  seconds = (path / "build_seconds.txt").read_text().strip()
  print(f"built {spec.clips} clips ({spec.config_name()}) in {seconds} s -> {path}")
  return 0


def _build_real(args):
  import importlib
  import pathlib
  from talkjax_datasets.real.options import BuildOptions
  if not args.raw:
    raise TalkjaxError(f"{args.dataset} is built from its raw files",
                       fix=f"pass --raw FOLDER (the layout: datasets/{args.dataset}/README.md)")
  raw = pathlib.Path(args.raw).expanduser()
  if not raw.is_dir():
    raise TalkjaxError("the --raw folder does not exist", path=raw, fix="check the path")
  if args.split_file and not pathlib.Path(args.split_file).is_file():
    raise TalkjaxError("the --split-file does not exist", path=args.split_file,
                       fix="check the path")
  options = BuildOptions(
      resolution=args.resolution or 512, fps=args.fps, image_format=args.image_format,
      crop=args.crop, smooth_seconds=args.smooth_seconds, detect_every=args.detect_every,
      min_face_share=args.min_face_share, min_seconds=args.min_seconds,
      segment_frames=args.segment_frames, max_av_mismatch=args.max_av_mismatch).validate()
  layout = {"split_file": args.split_file}
  if args.dataset == "mead":
    layout["views"] = tuple(v.strip() for v in args.views.split(",") if v.strip())
  else:
    layout.update(seed=args.seed, val=args.val, test=args.test)
  builder = importlib.import_module(f"talkjax_datasets.{args.dataset}.builder")
  builder.build(raw, args.out, options, workers=args.workers or None,
                overwrite=args.overwrite, keep_staging=args.keep_staging, **layout)
  return 0


def _convert(args):
  from talkjax_datasets.dyconv.vico import convert, summary
  report = convert(args.raw, args.out, csv=args.csv, link=not args.copy)
  print(summary(report))
  return 0


def _preview(args):
  from talkjax_datasets.synthtalk.preview import write_preview
  sheet, video = write_preview(args.data, args.out, split=args.split, clips=args.clips)
  print(f"wrote {sheet} and {video}")
  return 0
