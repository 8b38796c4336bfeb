"""The authors' released MEMO checkpoint -> a talkjax MEMO weight folder.

`talkjax convert memo --src DIR --out DIR` reads the release's model folder (the one its
inference script loads, `memoavatar/memo` on the Hugging Face hub):

    reference_net/   UNet2DConditionModel (config.json + diffusion_pytorch_model.*)
    diffusion_net/   UNet3DConditionModel: the same UNet with reference attention, audio
                     modules (`audio_modules.i`) and memory modules (`motion_modules.i`)
    image_proj/      ImageProjModel (face embedding -> 4 tokens)
    audio_proj/      AudioProjModel (5 frames x 12 wav2vec2 layers -> 32 tokens)
    misc/audio_emotion_classifier/   optional: the emotion head on emotion2vec features

and writes

    config.json   {"format": "talkjax.memo/1", "model": the talkjax model config (unet,
                   memory, audio, identity, emotion: what `memo_config` reads), "release":
                   the release's config.json files as read}
    params/       an Orbax checkpoint of {reference_net, diffusion_net, image_proj,
                  audio_proj[, emotion_classifier]} (float32)
    report.txt    every tensor: "subfolder: torch name -> flax/path shape"

Because talkjax's MEMO networks are named after the release's state dict
(talkjax/models/memo/networks.py), a tensor maps by name (torch_names.to_flax) plus:
- attention and GEGLU projections split their fused axis into (heads, head_dim) or
  (value/gate, inner) (`torch_names.split_axes`), 1x1 convs become dense kernels;
- EmoAdaLN class tables (`embedding_table.weight`, an nn.Embedding) keep their layout;
- the memory modules' `pos_encoder.pe` buffers are checked against the sinusoid talkjax
  computes (their length sets `position_max_len`) and not stored;
- the release's ReferenceNet stops at the last transformer's attn1 input (the only
  features the DiffusionNet reads), so it has no conv_out and that transformer keeps only
  its norm1: talkjax's full UNet gets zeros there, listed in the report, never read.
Everything is checked before anything is written; one error names every missing,
unexpected and mis-shaped tensor (per subfolder) or the config field talkjax cannot run.
"""

from __future__ import annotations

import pathlib

import numpy as np

from talkjax.convert.checkpoint_files import read_safetensors, read_torch_bin
from talkjax.convert.diffusers_unet import weight_files
from talkjax.convert.memo_release_config import (
  DOWNLOAD,
  EMOTION_FEATURES,
  check_projection_configs,
  emotion_classifier_shapes,
  model_config,
  read_json,
)
from talkjax.convert.torch_names import (
  Path,
  flatten,
  module_path,
  place,
  split_axes,
  to_flax,
  unflatten,
)
from talkjax.errors import TalkjaxError

FORMAT = "talkjax.memo/1"
NETWORKS = ("reference_net", "diffusion_net", "image_proj", "audio_proj")
EMOTION_CLASSIFIER = "misc/audio_emotion_classifier"

def _tensors(folder: pathlib.Path) -> dict[str, np.ndarray]:
  files = weight_files(str(folder), None)
  if files is None:
    found = sorted(p.name for p in folder.glob("*.safetensors")) or sorted(
        p.name for p in folder.glob("*.bin"))
    if not found:
      raise TalkjaxError("no diffusion_pytorch_model.safetensors (or .bin) here", path=folder,
                         fix=DOWNLOAD)
    files = [str(folder / f) for f in found]
  tensors = {}
  for file in files:
    if not pathlib.Path(file).is_file():
      raise TalkjaxError("a weight shard named in the index is missing", path=file,
                         fix="download every shard of the checkpoint")
    tensors.update(read_safetensors(file) if file.endswith(".safetensors")
                   else read_torch_bin(file))
  return tensors


def release_folders(src) -> dict[str, pathlib.Path]:
  """{network: folder} of a release folder; one error names every subfolder missing."""
  src = pathlib.Path(src).expanduser()
  if not src.is_dir():
    raise TalkjaxError("not a folder", path=src, fix=DOWNLOAD)
  missing = [n for n in NETWORKS if not (src / n).is_dir()]
  if missing:
    raise TalkjaxError(f"not a MEMO release folder: missing {', '.join(f'{m}/' for m in missing)}",
                       path=src, fix=DOWNLOAD)
  folders = {n: src / n for n in NETWORKS}
  if (src / EMOTION_CLASSIFIER).is_dir():
    folders["emotion_classifier"] = src / EMOTION_CLASSIFIER
  return folders


# ---- tensors -------------------------------------------------------------------------

def _positions_match(pe: np.ndarray) -> bool:
  from talkjax.nn.memory_attention import sinusoid_positions
  want = np.asarray(sinusoid_positions(pe.shape[-2], pe.shape[-1]))
  return pe.ndim == 3 and np.allclose(pe[0], want, atol=1e-5)


def _converter(expected: dict[Path, tuple]):
  def convert(key: str, array: np.ndarray):
    if key.endswith("embedding_table.weight"):           # nn.Embedding: (classes, dim) as is
      flax_key, _ = to_flax(key[:-len("weight")] + "bias", array)
      return flax_key[:-1] + ("embedding",), np.asarray(array, np.float32)
    flax_key, value = to_flax(key, array)
    return flax_key, split_axes(value, expected.get(flax_key))
  return convert


def _drop_positions(tensors: dict, position_max_len: int, path) -> tuple[dict, list[str]]:
  kept, report, wrong = {}, [], []
  for key, value in tensors.items():
    if key.endswith("pos_encoder.pe"):
      if not position_max_len or value.shape[-2] != position_max_len or not _positions_match(
          np.asarray(value, np.float32)):
        wrong.append(key)
      else:
        report.append(f"{key} -> (checked: the sinusoid talkjax computes) {tuple(value.shape)}")
    else:
      kept[key] = value
  if wrong:
    raise TalkjaxError(f"{len(wrong)} positional buffers are not the sinusoid of length "
                       f"{position_max_len} the config names: {wrong[0]}", path=path,
                       fix="pass the release's files unchanged")
  return kept, report


def reference_unused(path: Path, unet) -> bool:
  """Parameters of talkjax's full UNet (a UNetConfig) that the release's ReferenceNet
  leaves out: past the last transformer's attn1 input, all the DiffusionNet reads of it."""
  if path[0] in ("conv_norm_out", "conv_out"):
    return True
  last = unet.up_specs()[-1]
  if path[:2] != (f"up_blocks_{len(unet.up_specs()) - 1}", f"attentions_{last.layers - 1}"):
    return False
  return path[2] == "proj_out" or (path[2] == f"transformer_blocks_{last.transformer_layers - 1}"
                                   and path[3] != "norm1")


def convert_release(src) -> tuple[dict, dict, list[str]]:
  """(model config dict, params {network: tree}, report lines) of a release folder;
  nothing is written. Raises one TalkjaxError per problem found (all tensors of a
  subfolder are checked together)."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import ml_collections

  from talkjax.models.memo.builders import memo_config
  from talkjax.models.memo.model import Memo

  folders = release_folders(src)
  configs = {n: read_json(f / "config.json") for n, f in folders.items()}
  tensors = {n: _tensors(f) for n, f in folders.items()}
  model = model_config(configs, tensors, folders, pathlib.Path(src).expanduser())
  check_projection_configs(configs, model, folders)

  cfg = ml_collections.ConfigDict(dict(model, clip={"frames": 2, "past": 1}))
  memo = Memo(memo_config(cfg))
  c = memo.config
  z = lambda *shape: jnp.zeros(shape + (c.unet.in_channels,))   # latents: shapes only
  example = dict(identity=jnp.zeros((1, c.identity_dim)), reference=z(1, 8, 8),
                 past=z(1, 1, 8, 8), latents=z(1, 2, 8, 8), emotion=jnp.zeros((1,), jnp.int32),
                 speech=jnp.zeros((1, 2, c.audio_window, c.audio_layers, c.audio_channels)))
  shapes = jax.eval_shape(lambda: nn.meta.unbox(memo.init(jax.random.PRNGKey(0), example)))
  params, report = {}, []
  for name in NETWORKS:
    expected = {k: tuple(v.shape) for k, v in flatten(shapes[name]).items()}
    given = tensors[name]
    lines = []
    if name == "diffusion_net":
      given, lines = _drop_positions(given, c.memory.position_max_len, folders[name])
    zeros = {}
    if name == "reference_net":
      present = {module_path(k)[:-1] for k in given}     # modules, by name: no tensor copied
      zeros = {k: s for k, s in expected.items()
               if k[:-1] not in present and reference_unused(k, c.unet)}
      expected = {k: s for k, s in expected.items() if k not in zeros}
    tree, mapped = place(given, expected, what=f"MEMO {name}", path=folders[name],
                         convert=_converter(expected),
                         fix="pass the release's files unchanged (" + DOWNLOAD + ")")
    flat = flatten(tree)
    for k, s in zeros.items():
      flat[k] = np.zeros(s, np.float32)
      lines.append(f"(not in the release: unused past the last attn1 input) -> zeros "
                   f"{'/'.join(k)} {s}")
    params[name] = unflatten(flat)
    report += [f"{name}: {line}" for line in mapped + lines]
  if "emotion_classifier" in tensors:
    tree, mapped = emotion_classifier_params(tensors["emotion_classifier"],
                                             configs["emotion_classifier"],
                                             folders["emotion_classifier"])
    params["emotion_classifier"] = tree
    report += [f"emotion_classifier: {line}" for line in mapped]
  model["release"] = configs
  return model, params, report


def emotion_classifier_params(tensors: dict, config: dict, path) -> tuple[dict, list[str]]:
  """The release's audio emotion classifier -> {layers: {fc_i: {kernel, bias}}}."""
  return place(tensors, emotion_classifier_shapes(config, path),
               what="MEMO audio emotion classifier", path=path,
               fix="pass the release's misc/audio_emotion_classifier unchanged")


def write(out, model: dict, params: dict, report: list[str]) -> pathlib.Path:
  from talkjax.convert import weight_folder
  return weight_folder.write(out, {"format": FORMAT, "family": "memo", "model": model},
                             params, report)


RECOGNIZER = "misc/face_analysis/models/glintr100.onnx"
SEPARATOR = "misc/vocal_separator/Kim_Vocal_2.onnx"     # `talkjax sample --separate-vocals`


def convert_folder(src, out, *, vae=None, wav2vec2=None, emotion2vec=None
                   ) -> tuple[pathlib.Path, list[str]]:
  """Converts the release (checked first, then written); with `vae` (the diffusers folder
  of sd-vae-ft-mse), `wav2vec2` (the Hugging Face folder of wav2vec2-base-960h) and
  `emotion2vec` (FunASR's folder of emotion2vec_plus_large) also those into out/vae,
  out/wav2vec2 and out/emotion2vec, and copies the release's face recogniser into
  out/face/: what `talkjax sample --checkpoint OUT` needs."""
  import shutil

  from talkjax.convert import diffusers, emotion2vec as e2v, wav2vec2 as w2v
  if wav2vec2 is not None and not (pathlib.Path(wav2vec2).expanduser() / "config.json").is_file():
    raise TalkjaxError("--wav2vec2 holds no config.json", path=wav2vec2,
                       fix="pass the Hugging Face folder of facebook/wav2vec2-base-960h")
  model, params, report = convert_release(src)
  emotion = None
  if emotion2vec is not None:
    emotion2vec = pathlib.Path(emotion2vec).expanduser()
    if "emotion_classifier" not in params:
      raise TalkjaxError(f"--emotion2vec needs the release's {EMOTION_CLASSIFIER}/ (the "
                         "classifier on its features), which this release folder lacks",
                         path=src, fix=DOWNLOAD)
    e2v_config = e2v.read_model_conf(emotion2vec)[1]
    emotion = e2v.convert_tensors(e2v.read_state_dict(emotion2vec / "model.pt"), e2v_config,
                                  emotion2vec / "model.pt")
    if e2v_config.embed_dim != EMOTION_FEATURES:
      raise TalkjaxError(f"this emotion2vec is {e2v_config.embed_dim} wide; the release's "
                         f"classifier reads {EMOTION_FEATURES}-d features "
                         "(emotion2vec_plus_large)", path=emotion2vec,
                         fix="pass the folder of emotion2vec_plus_large")
  vae_loaded = None
  if vae is not None:
    vae_loaded = diffusers.load_diffusers(vae)
    if vae_loaded[0] != "vae":
      raise TalkjaxError(f"--vae names a {vae_loaded[0]}, not an AutoencoderKL", path=vae,
                         fix="pass the diffusers folder of stabilityai/sd-vae-ft-mse")
  folder = write(out, model, params, report)
  if vae_loaded is not None:
    diffusers.write_converted(folder / "vae", *vae_loaded)
  if wav2vec2 is not None:
    w2v.convert_folder(wav2vec2, folder / "wav2vec2")
  if emotion is not None:
    from talkjax.convert import weight_folder
    weight_folder.write(folder / "emotion2vec", {"format": e2v.FORMAT,
                                                 "config": e2v_config.to_dict()}, *emotion)
  for file, sub in ((pathlib.Path(src).expanduser() / RECOGNIZER, "face"),
                    (pathlib.Path(src).expanduser() / SEPARATOR, "separator")):
    if file.is_file():
      (folder / sub).mkdir(exist_ok=True)
      shutil.copy2(file, folder / sub / file.name)
  return folder, report


def load_converted(folder, shardings=None) -> tuple[dict, dict]:
  """(model config dict, params) of a folder written by `talkjax convert memo`; with
  `shardings`, read straight into their places on a mesh."""
  from talkjax.convert import weight_folder
  folder = pathlib.Path(folder).expanduser().absolute()
  meta = read_json(folder / "config.json")
  if meta.get("format") != FORMAT:
    raise TalkjaxError("not a folder written by `talkjax convert memo`", path=folder,
                       fix="convert the release first: talkjax convert memo --src DIR --out DIR")
  return meta["model"], weight_folder.read_params(folder, shardings)
