"""Import pretrained weights into talkjax's Flax modules, or package a trained model.

wav2vec2: reads Hugging Face folders (config.json + model.safetensors, or a PyTorch .bin
read without executing pickled code) and writes a talkjax weight folder (config.json +
params.safetensors) that `talkjax.audio.wav2vec2.load_pretrained` reads.

diffusers: reads diffusers AutoencoderKL / UNet2DConditionModel folders (or a Stable
Diffusion pipeline folder with vae/ and unet/) and writes talkjax weight folders (Orbax
parameters + talkjax config + a report of every tensor mapped); see
talkjax/convert/diffusers.py.

memo: reads the authors' released MEMO model folder (reference_net/, diffusion_net/,
image_proj/, audio_proj/ and, when present, misc/audio_emotion_classifier/) and writes one
talkjax MEMO weight folder (Orbax parameters + talkjax model config + a report of every
tensor mapped); see talkjax/convert/memo_release.py and experiments/memo/released_weights.md.
With --vae, --wav2vec2 and --emotion2vec it also converts what the release samples with
(sd-vae-ft-mse, wav2vec2-base-960h, FunASR's emotion2vec_plus_large) into the same folder.

bundle: packs a trained generator (its last stage's training folder and every stage that
folder's config names, e.g. IF-MDM's stage 1; EMA weights when present) into one file that
`talkjax sample --checkpoint` and `talkjax eval model --checkpoint` accept.
"""

EXAMPLES = """\
examples:
  talkjax convert wav2vec2 --src ~/models/wav2vec2-base-960h --out weights/wav2vec2-base
  talkjax convert wav2vec2 --src ~/models/wav2vec2-large-xlsr-53 --out weights/wav2vec2-large
  talkjax convert diffusers --src ~/models/sd-vae-ft-mse --out weights/sd-vae-ft-mse
  talkjax convert diffusers --src ~/models/stable-diffusion-v1-5 --out weights/sd15  # vae/ + unet/
  talkjax convert memo --src ~/models/memo --vae ~/models/sd-vae-ft-mse \
      --wav2vec2 ~/models/wav2vec2-base-960h --emotion2vec ~/models/emotion2vec_plus_large \
      --out weights/memo  # the released MEMO weights
  talkjax convert bundle --src runs/ifmdm_tiny_stage2 --out ifmdm_tiny.msgpack
"""


def add_arguments(parser):
  parser.add_argument("what", choices=["wav2vec2", "diffusers", "memo", "bundle"],
                      help="wav2vec2: import Hugging Face weights; diffusers: import a VAE / "
                           "UNet (or both from a pipeline folder); memo: import the authors' "
                           "released MEMO checkpoint; bundle: one file from a trained generator")
  parser.add_argument("--src", required=True,
                      help="wav2vec2: Hugging Face model folder (config.json + *.safetensors or "
                           "*.bin); diffusers: a diffusers model folder or pipeline folder; "
                           "memo: the release's model folder (memoavatar/memo on the Hugging "
                           "Face hub); bundle: the generator's last training folder (IF-MDM: "
                           "stage 2) or a model file to rewrite")
  parser.add_argument("--vae", default=None,
                      help="memo: also convert this diffusers VAE folder (stabilityai/"
                           "sd-vae-ft-mse) into OUT/vae")
  parser.add_argument("--wav2vec2", default=None,
                      help="memo: also convert this Hugging Face wav2vec2 folder (facebook/"
                           "wav2vec2-base-960h) into OUT/wav2vec2")
  parser.add_argument("--emotion2vec", default=None,
                      help="memo: also convert this FunASR emotion2vec folder (config.yaml + "
                           "model.pt of emotion2vec_plus_large) into OUT/emotion2vec, so "
                           "sampling reads each clip's emotion from the audio")
  parser.add_argument("--int8", action="store_true",
                      help="bundle: store weight matrices as int8 with a scale per output channel "
                           "(about half a float16 file; measure the model's quality on it)")
  parser.add_argument("--out", required=True,
                      help="wav2vec2, diffusers, memo: output folder (created if missing); bundle: "
                           "the model file")


def run(args):
  if args.what == "diffusers":
    from talkjax.convert.diffusers import convert_folder
    for kind, folder, tensors in convert_folder(args.src, args.out):
      print(f"wrote {folder}: {kind}, {tensors} tensors mapped (list: {folder / 'report.txt'})")
    return 0
  if args.what == "memo":
    from talkjax.convert.memo_release import convert_folder
    folder, report = convert_folder(args.src, args.out, vae=args.vae, wav2vec2=args.wav2vec2,
                                    emotion2vec=args.emotion2vec)
    zeros = sum("-> zeros" in line for line in report)
    print(f"wrote {folder}: MEMO, {len(report) - zeros} release tensors mapped, none missing or "
          f"unexpected ({zeros} unused ReferenceNet parameters set to zero; list: "
          f"{folder / 'report.txt'})")
    missing = [n for n in ("vae", "wav2vec2", "face") if not (folder / n).exists()]
    if missing:
      print(f"to sample it, it still needs {', '.join(missing)}: see "
            "experiments/memo/released_weights.md")
    else:
      print(f"sample it: talkjax sample --checkpoint {folder} --image PORTRAIT --audio SPEECH")
    if not (folder / "emotion2vec").exists():
      print("without --emotion2vec, videos take --emotion NAME (or the null emotion); the "
            "release reads it from the audio with emotion2vec_plus_large")
    return 0
  if args.what == "bundle":
    from talkjax import bundle
    from talkjax.models import load_generator
    hook, params = load_generator(args.src)
    size = bundle.save(args.out, hook, params, int8=args.int8)
    print(f"wrote {args.out} ({hook.config.family}, {size / 2**20:.1f} MiB)")
    return 0
  from talkjax.convert.wav2vec2 import convert_folder
  config = convert_folder(args.src, args.out)
  layout = "stable layer norm" if config.do_stable_layer_norm else "group norm"
  print(f"wrote {args.out}: wav2vec2 {config.num_hidden_layers} layers x {config.hidden_size} "
        f"({layout})")
  return 0
