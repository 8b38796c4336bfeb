"""Make a talking-head video from the built-in SynthTalk model.

Renders an identity and speech the model never trained on, writes the mp4 (with sound), a
side-by-side image (ground truth vs generated) and the SynthTalk probe's metrics, and prints
where they are. `--train` retrains the demo model from scratch with its documented command.
"""

from talkjax.commands import missing

EXAMPLES = """\
examples:
  talkjax demo                        # writes ./talkjax-demo/{demo.mp4,side_by_side.png,metrics.json}
  talkjax demo --out /tmp/demo --seed 3
  talkjax demo --train                # retrain the small SynthTalk model first
"""


def add_arguments(parser):
  parser.add_argument("--out", default="talkjax-demo", help="output folder (default: %(default)s)")
  parser.add_argument("--seed", type=int, default=0, help="which held-out identity/speech to use")
  parser.add_argument("--train", action="store_true", help="retrain the demo model from scratch")


def run(args):
  raise missing("demo", "the IF-MDM model family and the sampling pipeline",
                "the IF-MDM and pipelines work (talkjax/models/ifmdm.py, talkjax/pipelines/)")
