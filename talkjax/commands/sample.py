"""Turn a portrait image and speech audio into a talking-head mp4.

One request with --image/--audio, or many with --manifest (a JSONL file, one request per
line); manifest requests are bucketed by length and sampled as sharded batches over every
device, compiling once per bucket.
"""

from talkjax.commands import missing

EXAMPLES = """\
examples:
  talkjax sample --checkpoint runs/ifmdm --image face.png --audio speech.wav --out out.mp4
  talkjax sample --checkpoint runs/infp --image face.png --audio me.wav --partner-audio you.wav --out talk.mp4
  talkjax sample --checkpoint runs/ifmdm --manifest requests.jsonl --out results/
"""


def add_arguments(parser):
  parser.add_argument("--checkpoint", required=True, help="a training workdir or checkpoint folder")
  parser.add_argument("--image", help="portrait image (any format Pillow reads)")
  parser.add_argument("--audio", help="driving speech (wav, flac, mp3, m4a, ogg)")
  parser.add_argument("--partner-audio", help="the partner's track (dyadic families)")
  parser.add_argument("--emotion", help="emotion name, e.g. happy (families that take one)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--manifest", help="JSONL file of requests instead of --image/--audio")
  parser.add_argument("--out", required=True, help="output .mp4 (or folder with --manifest)")


def run(args):
  raise missing("sample", "the sampling pipelines", "the pipelines work (talkjax/pipelines/)")
