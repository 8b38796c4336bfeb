"""Import pretrained weights into talkjax's Flax modules, or package a trained model.

wav2vec2: reads Hugging Face folders (config.json + model.safetensors, or a PyTorch .bin
read without executing pickled code) and writes a talkjax weight folder (config.json +
params.safetensors) that `talkjax.audio.wav2vec2.load_pretrained` reads.

bundle: packs a trained IF-MDM (the stage-2 training folder and the stage-1 folder its
config names; EMA weights when present) into one file that `talkjax sample --checkpoint`
and `talkjax eval model --checkpoint` accept.
"""

EXAMPLES = """\
examples:
  talkjax convert wav2vec2 --src ~/models/wav2vec2-base-960h --out weights/wav2vec2-base
  talkjax convert wav2vec2 --src ~/models/wav2vec2-large-xlsr-53 --out weights/wav2vec2-large
  talkjax convert bundle --src runs/ifmdm_tiny_stage2 --out ifmdm_tiny.msgpack
"""


def add_arguments(parser):
  parser.add_argument("what", choices=["wav2vec2", "bundle"],
                      help="wav2vec2: import Hugging Face weights; bundle: one file from a "
                           "trained IF-MDM")
  parser.add_argument("--src", required=True,
                      help="wav2vec2: Hugging Face model folder (config.json + *.safetensors or "
                           "*.bin); bundle: the stage-2 training folder")
  parser.add_argument("--out", required=True, help="output folder (created if missing)")


def run(args):
  if args.what == "bundle":
    import os
    from talkjax.models.ifmdm_generate import IFMDMGenerator
    gen = IFMDMGenerator.from_workdir(args.src)
    gen.save_bundle(args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 2**20:.1f} MiB)")
    return 0
  from talkjax.convert.wav2vec2 import convert_folder
  config = convert_folder(args.src, args.out)
  layout = "stable layer norm" if config.do_stable_layer_norm else "group norm"
  print(f"wrote {args.out}: wav2vec2 {config.num_hidden_layers} layers x {config.hidden_size} "
        f"({layout})")
  return 0
