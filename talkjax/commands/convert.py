"""Import pretrained weights into talkjax's Flax modules.

Reads Hugging Face folders (config.json + model.safetensors, or a PyTorch .bin read without
executing pickled code) and writes a talkjax weight folder.
"""

from talkjax.commands import missing

EXAMPLES = """\
examples:
  talkjax convert wav2vec2 --src ~/models/wav2vec2-base-960h --out weights/wav2vec2-base
"""


def add_arguments(parser):
  parser.add_argument("what", choices=["wav2vec2"], help="which weights to import")
  parser.add_argument("--src", required=True, help="source folder")
  parser.add_argument("--out", required=True, help="output folder")


def run(args):
  raise missing("convert", "the Flax wav2vec2 and its weight import", "the audio front-end work (talkjax/audio/)")
