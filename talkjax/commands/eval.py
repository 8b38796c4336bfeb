"""Score generated talking-head videos with the SynthTalk probe.

Reports lip-sync (correlation with the audio-implied mouth trajectory and the best
audio-video offset), emotion accuracy, identity drift, head-motion statistics and
speak/listen accuracy as JSON.
"""

from talkjax.commands import missing

EXAMPLES = """\
examples:
  talkjax eval --video out.mp4 --audio speech.wav
  talkjax eval --video out.mp4 --audio speech.wav --json metrics.json
"""


def add_arguments(parser):
  parser.add_argument("--video", required=True, help="generated video (mp4)")
  parser.add_argument("--audio", help="driving audio (default: the video's own audio track)")
  parser.add_argument("--json", help="also write the metrics to this file")


def run(args):
  raise missing("eval", "the SynthTalk probe", "the SynthTalk work (talkjax/eval/)")
