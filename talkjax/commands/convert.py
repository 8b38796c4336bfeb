"""Import pretrained weights into talkjax's Flax modules.

Reads Hugging Face folders (config.json + model.safetensors, or a PyTorch .bin read without
executing pickled code) and writes a talkjax weight folder (config.json +
params.safetensors) that `talkjax.audio.wav2vec2.load_pretrained` reads.
"""

EXAMPLES = """\
examples:
  talkjax convert wav2vec2 --src ~/models/wav2vec2-base-960h --out weights/wav2vec2-base
  talkjax convert wav2vec2 --src ~/models/wav2vec2-large-xlsr-53 --out weights/wav2vec2-large
"""


def add_arguments(parser):
  parser.add_argument("what", choices=["wav2vec2"], help="which weights to import")
  parser.add_argument("--src", required=True,
                      help="Hugging Face model folder (config.json + *.safetensors or *.bin)")
  parser.add_argument("--out", required=True, help="output folder (created if missing)")


def run(args):
  from talkjax.convert.wav2vec2 import convert_folder
  config = convert_folder(args.src, args.out)
  layout = "stable layer norm" if config.do_stable_layer_norm else "group norm"
  print(f"wrote {args.out}: wav2vec2 {config.num_hidden_layers} layers x {config.hidden_size} "
        f"({layout})")
  return 0
