"""Sampling the authors' released MEMO weights from a folder `talkjax convert memo` wrote.

The folder holds the four networks (params/), their talkjax model config (config.json)
and what the release samples with beside them, converted by the same command:
`vae/` (the SD "ft-mse" VAE, `--vae`), `wav2vec2/` (wav2vec2-base-960h, `--wav2vec2`) and
`face/` (the release's face recogniser, glintr100.onnx from misc/face_analysis/models/).
`sampling_config` builds the full talkjax config the generation hook runs: the release's
inference settings (512 px as the UNet's sample_size x the VAE's factor, 16-frame clips
after 16 past frames, 20 Euler steps, guidance 3.5) at the generation layer's 25 fps
(deviation, labelled in generate.py: the release runs at 30).
Emotion: the request's `--emotion`; otherwise, with `emotion2vec/` (FunASR's
emotion2vec_plus_large, `--emotion2vec`), read from the audio as the release does, by
emotion2vec and the release's classifier (talkjax/models/memo/release_emotion.py); a folder
without it samples the null label.
"""

from __future__ import annotations

import json
import pathlib

import ml_collections

from talkjax.errors import TalkjaxError

FOLDERS = {"vae": "--vae (the diffusers folder of stabilityai/sd-vae-ft-mse)",
           "wav2vec2": "--wav2vec2 (the Hugging Face folder of facebook/wav2vec2-base-960h)"}


def _require(folder: pathlib.Path, name: str) -> pathlib.Path:
  path = folder / name
  if not path.exists():
    raise TalkjaxError(f"this converted MEMO folder has no {name}/, which sampling needs",
                       path=folder, fix=f"convert again with {FOLDERS[name]}")
  return path


def recognizer(folder: pathlib.Path) -> pathlib.Path:
  found = sorted((folder / "face").glob("*.onnx"))
  if not found:
    raise TalkjaxError("this converted MEMO folder has no face recogniser (face/*.onnx)",
                       path=folder, fix="convert from the release folder with its misc/ "
                                        "(misc/face_analysis/models/glintr100.onnx), or copy "
                                        "that file into face/")
  return found[0]


def sampling_config(folder) -> ml_collections.ConfigDict:
  from talkjax.convert.memo_release import FORMAT
  from talkjax.defaults import base_config
  folder = pathlib.Path(folder).expanduser().absolute()
  meta = json.loads((folder / "config.json").read_text())
  if meta.get("format") != FORMAT:
    raise TalkjaxError("not a folder written by `talkjax convert memo`", path=folder,
                       fix="convert the release: talkjax convert memo --src DIR --out DIR")
  model = meta["model"]
  vae_folder, w2v_folder = _require(folder, "vae"), _require(folder, "wav2vec2")
  vae_meta = json.loads((vae_folder / "config.json").read_text())
  if vae_meta.get("kind") != "vae":
    raise TalkjaxError(f"vae/ holds a {vae_meta.get('kind')!r}, not a VAE", path=vae_folder,
                       fix=f"convert again with {FOLDERS['vae']}")
  vae = vae_meta["config"]
  c = base_config()
  c.family = "memo"
  m = c.model
  factor = 2 ** (len(vae["block_out_channels"]) - 1)
  sample_size = model["release"]["reference_net"].get("sample_size") or 64
  m.resolution = int(sample_size) * factor
  m.unet = ml_collections.ConfigDict(model["unet"])
  m.vae = ml_collections.ConfigDict(vae)
  m.memory = ml_collections.ConfigDict(model["memory"])
  m.audio = ml_collections.ConfigDict(dict(model["audio"], wav2vec2=str(w2v_folder),
                                           context_s=1.0))
  m.identity = ml_collections.ConfigDict(dict(model["identity"], channels=[32, 64, 128, 256],
                                              recognizer=str(recognizer(folder))))
  m.emotion = ml_collections.ConfigDict(model["emotion"])
  m.modules = list(model["modules"])
  m.clip = ml_collections.ConfigDict(dict(frames=16, past=16))
  m.dropout = ml_collections.ConfigDict(dict(image=0.05, audio=0.05, past=0.05, unguided=0.0))
  m.flow = ml_collections.ConfigDict(dict(logit_mean=0.0, logit_std=1.0))
  m.remat = False
  m.weights = ml_collections.ConfigDict(dict(vae=str(vae_folder), unet=""))
  c.train.robust_loss_threshold = 0.1
  c.sample = ml_collections.ConfigDict(dict(steps=20, guidance=3.5, fps=25))
  c.compute_dtype = "bfloat16"    # the release samples in bf16
  return c


def emotion_reader(folder):
  """The release's audio emotion reader when the folder has emotion2vec/, else None."""
  from talkjax.convert.emotion2vec import read_config
  from talkjax.models.memo.release_emotion import ReleaseEmotionReader
  folder = pathlib.Path(folder).expanduser().absolute()
  if not (folder / "emotion2vec").is_dir():
    return None
  meta = json.loads((folder / "config.json").read_text())
  classifier = meta["model"]["release"].get("emotion_classifier", {})
  return ReleaseEmotionReader(read_config(folder / "emotion2vec"),
                              int(classifier.get("num_classifier_layers", 5)),
                              int(classifier.get("num_classifier_channels", 2048)))


def load(folder) -> dict:
  """The parameters generation reads: {"memo", "vae", "speech"[, "emotion"]}."""
  from talkjax.audio.wav2vec2 import load_pretrained
  from talkjax.convert import emotion2vec
  from talkjax.convert.diffusers import load_converted
  from talkjax.convert.memo_release import load_converted as load_memo
  folder = pathlib.Path(folder).expanduser().absolute()
  _, params = load_memo(folder)
  classifier = params.pop("emotion_classifier", None)
  out = {"memo": params, "vae": load_converted(folder / "vae")[2],
         "speech": load_pretrained(folder / "wav2vec2")[1]}
  if (folder / "emotion2vec").is_dir():
    out["emotion"] = {"encoder": emotion2vec.load_converted(folder / "emotion2vec")[1],
                      "classifier": classifier}
  return out
