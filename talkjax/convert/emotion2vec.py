"""A FunASR emotion2vec model folder -> a talkjax emotion2vec weight folder.

The folder FunASR (and ModelScope / the Hugging Face hub) ships, e.g.
`iic/emotion2vec_plus_large`:

    config.yaml   `model: Emotion2vec` and its `model_conf` (the architecture)
    model.pt      the state dict (a zip-format torch file, read without running pickles)
    tokens.txt    the 9 class names of its own head (`proj`, not used by MEMO)

is written as talkjax's weight folder (config.json {"format": "talkjax.emotion2vec/1",
"config": Emotion2vecConfig}, params/, report.txt). Names map from FunASR's modules to
talkjax/audio/emotion2vec.py's (Linear/Conv weights transposed, LayerNorm weight ->
scale); what only pre-training or FunASR's own head uses is dropped and listed in the
report: the masked-prediction `decoder`, the EMA teacher, and `proj` (the 9-class head;
MEMO classifies the mean feature with its own classifier).
"""

from __future__ import annotations

import pathlib
import re

import numpy as np

from talkjax.audio.emotion2vec import Emotion2vec, Emotion2vecConfig
from talkjax.errors import TalkjaxError

FORMAT = "talkjax.emotion2vec/1"
DOWNLOAD = ("download the emotion2vec model folder (config.yaml + model.pt), e.g. "
            "iic/emotion2vec_plus_large from ModelScope or emotion2vec/emotion2vec_plus_large "
            "from the Hugging Face hub")
_ENCODER = "modality_encoders.AUDIO."
_DROPPED = (re.compile(r"^(modality_encoders\.AUDIO\.decoder|decoder|_ema|ema|proj)\."),)
_BLOCK = re.compile(r"^(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)$")


def read_model_conf(folder: pathlib.Path) -> tuple[dict, Emotion2vecConfig]:
  import yaml
  path = folder / "config.yaml"
  if not path.is_file():
    raise TalkjaxError("no config.yaml in the emotion2vec folder", path=folder, fix=DOWNLOAD)
  try:
    raw = yaml.safe_load(path.read_text())
  except yaml.YAMLError as e:
    raise TalkjaxError(f"config.yaml is not valid YAML ({e})", path=path, fix=DOWNLOAD) from None
  if not isinstance(raw, dict) or raw.get("model") != "Emotion2vec":
    raise TalkjaxError(f"config.yaml describes a {(raw or {}).get('model')!r} model, not "
                       "Emotion2vec", path=path, fix=DOWNLOAD)
  conf = raw.get("model_conf")
  if not isinstance(conf, dict):
    raise TalkjaxError("config.yaml has no model_conf", path=path, fix=DOWNLOAD)
  return raw, Emotion2vecConfig.from_model_conf(conf, path)


def read_state_dict(path: pathlib.Path) -> dict[str, np.ndarray]:
  """The tensors of model.pt, unwrapped from a training checkpoint's {"model": ...} (or
  "state_dict" / "model_state_dict") as FunASR's loader does, "module." prefixes removed."""
  from talkjax.convert.checkpoint_files import read_torch_object
  if not path.is_file():
    raise TalkjaxError("no model.pt in the emotion2vec folder", path=path.parent, fix=DOWNLOAD)
  state = read_torch_object(path)
  for key in ("state_dict", "model_state_dict", "model"):
    if isinstance(state, dict) and isinstance(state.get(key), dict):
      state = state[key]
  tensors = {k.removeprefix("module."): v for k, v in state.items()
             if isinstance(v, np.ndarray)}
  if not tensors:
    raise TalkjaxError("model.pt holds no tensors", path=path, fix=DOWNLOAD)
  return tensors


def _leaf(name: str, kind: str, array: np.ndarray) -> tuple[str, np.ndarray]:
  """torch (weight|bias) of a Linear / Conv1d / LayerNorm -> the flax leaf name and value."""
  if kind == "bias":
    return "bias", array
  if kind != "weight":
    raise KeyError(name)
  if array.ndim == 3:            # Conv1d (out, in / groups, k) -> (k, in / groups, out)
    return "kernel", array.transpose(2, 1, 0)
  if array.ndim == 2:            # Linear (out, in) -> (in, out)
    return "kernel", array.T
  return "scale", array          # LayerNorm / GroupNorm


def _converter(config: Emotion2vecConfig):
  pos_prefix = "relative_positional_encoder." + ("1." if config.conv_pos_pre_ln else "")
  norms = {"project_features.1": "project_norm", "context_encoder.norm": "context_norm",
           "relative_positional_encoder.0": "pos_pre_norm"}

  def convert(key: str, array: np.ndarray):
    if key in (_ENCODER + "extra_tokens",):
      return ("extra_tokens",), array
    if key == _ENCODER + "alibi_scale":     # older files stored it without the layer axis
      return ("alibi_scale",), array[None] if array.ndim == 4 else array
    module, _, kind = key.rpartition(".")
    local = module.removeprefix(_ENCODER)
    if m := re.fullmatch(r"local_encoder\.conv_layers\.(\d+)\.0", local):
      leaf, value = _leaf(key, kind, array)
      return (f"conv_{m[1]}", leaf), value
    if m := re.fullmatch(r"local_encoder\.conv_layers\.(\d+)\.2(\.1)?", local):
      leaf, value = _leaf(key, kind, array)
      return (f"conv_norm_{m[1]}", leaf), value
    if local == "project_features.2":
      leaf, value = _leaf(key, kind, array)
      return ("project", leaf), value
    if local in norms and module.startswith(_ENCODER) and (
        config.conv_pos_pre_ln or local != "relative_positional_encoder.0"):
      leaf, value = _leaf(key, kind, array)
      return (norms[local], leaf), value
    if m := re.fullmatch(re.escape(pos_prefix) + r"(\d+)\.0", local):
      leaf, value = _leaf(key, kind, array)
      return (f"pos_conv_{int(m[1]) - 1}", leaf), value
    if m := re.fullmatch(r"(context_encoder\.)?blocks\.(\d+)\.(.+)", key.removeprefix(_ENCODER)):
      inner = _BLOCK.fullmatch(m[3])
      if inner is None or (m[1] is None) == key.startswith(_ENCODER):
        raise KeyError(key)
      leaf, value = _leaf(key, inner[2], array)
      block = f"prenet_{m[2]}" if m[1] else f"block_{m[2]}"
      return (block,) + tuple(inner[1].split(".")) + (leaf,), value
    if module == "norm" and config.layer_norm_first:
      leaf, value = _leaf(key, kind, array)
      return ("norm", leaf), value
    raise KeyError(key)
  return convert


def expected_shapes(config: Emotion2vecConfig) -> dict[tuple, tuple]:
  import jax
  import jax.numpy as jnp

  from talkjax.convert.torch_names import flatten
  samples = 400
  shapes = jax.eval_shape(lambda: Emotion2vec(config).init(
      jax.random.PRNGKey(0), jnp.zeros((1, samples)))["params"])
  return {k: tuple(v.shape) for k, v in flatten(shapes).items()}


def convert_tensors(tensors: dict[str, np.ndarray], config: Emotion2vecConfig, path=None
                    ) -> tuple[dict, list[str]]:
  """(params, report) of FunASR's tensors; one error names every tensor that does not fit."""
  from talkjax.convert.torch_names import place
  kept, dropped = {}, []
  for key, value in tensors.items():
    if any(p.match(key) for p in _DROPPED):
      dropped.append(f"{key} {tuple(value.shape)} dropped (not used for features)")
    else:
      kept[key] = value
  params, report = place(kept, expected_shapes(config), what="emotion2vec", path=path,
                         convert=_converter(config),
                         fix="pass model.pt with the config.yaml it came with")
  return params, report + sorted(dropped)


def convert_folder(src, out) -> tuple[pathlib.Path, Emotion2vecConfig, list[str]]:
  """Checks the whole folder first, then writes `out`."""
  from talkjax.convert import weight_folder
  src = pathlib.Path(src).expanduser()
  if not src.is_dir():
    raise TalkjaxError("emotion2vec folder not found", path=src, fix=DOWNLOAD)
  _, config = read_model_conf(src)
  params, report = convert_tensors(read_state_dict(src / "model.pt"), config, src / "model.pt")
  folder = weight_folder.write(out, {"format": FORMAT, "config": config.to_dict()}, params,
                               report)
  return folder, config, report


def read_config(folder) -> Emotion2vecConfig:
  from talkjax.convert.memo_release_config import read_json
  folder = pathlib.Path(folder).expanduser().absolute()
  meta = read_json(folder / "config.json")
  if meta.get("format") != FORMAT:
    raise TalkjaxError("not a folder written by converting emotion2vec", path=folder,
                       fix="convert again: talkjax convert memo ... --emotion2vec DIR")
  return Emotion2vecConfig.from_dict(meta["config"])


def load_converted(folder) -> tuple[Emotion2vecConfig, dict]:
  from talkjax.convert import weight_folder
  return read_config(folder), weight_folder.read_params(folder)
