"""Hugging Face wav2vec2 -> talkjax Flax parameters, and the talkjax weight folder.

The Flax tree mirrors Hugging Face's module names ("encoder.layers.3.attention.q_proj"
becomes encoder/layers_3/attention/q_proj), so the mapping is mechanical:
- Linear `weight` (out, in) -> Dense `kernel` (in, out); `bias` unchanged;
- Conv1d `weight` (out, in/groups, k) -> Conv `kernel` (k, in/groups, out);
- LayerNorm/GroupNorm `weight` -> `scale`;
- the weight-normalised positional conv is folded: w = g * v / |v|, norms taken over every
  axis except the kernel axis (torch's `weight_norm(dim=2)`), from either the old names
  (`weight_g`, `weight_v`) or the parametrization names of newer torch
  (`parametrizations.weight.original0` / `original1`).
Heads of task models (`lm_head`, `projector`, `classifier`, `quantizer`, ...) and
`masked_spec_embed` (only used for training-time masking) are dropped; the `wav2vec2.`
prefix of task models is stripped.

A talkjax weight folder holds `config.json` (talkjax's Wav2Vec2Config) and
`params.safetensors` (flat keys joined with '/').
"""

from __future__ import annotations

import json
import os

import numpy as np

from talkjax.audio.wav2vec2 import Wav2Vec2Config, init_params
from talkjax.convert.checkpoint_files import read_checkpoint_folder
from talkjax.convert.torch_names import flatten as _flatten
from talkjax.convert.torch_names import module_path, to_flax
from talkjax.convert.torch_names import unflatten as _unflatten
from talkjax.errors import TalkjaxError

_POS_CONV = "encoder.pos_conv_embed.conv."
_DROPPED_PREFIXES = ("lm_head.", "projector.", "classifier.", "quantizer.", "project_q.",
                     "project_hid.", "dropout_features.", "adapter.")


def _strip_prefix(tensors: dict) -> dict:
  if any(k.startswith("wav2vec2.") for k in tensors):
    tensors = {k[len("wav2vec2."):]: v for k, v in tensors.items() if k.startswith("wav2vec2.")}
  return {k: v for k, v in tensors.items()
          if k != "masked_spec_embed" and not k.startswith(_DROPPED_PREFIXES)}


def _fold_weight_norm(tensors: dict, path: str) -> dict:
  names = [("weight_g", "weight_v"),
           ("parametrizations.weight.original0", "parametrizations.weight.original1")]
  for g_name, v_name in names:
    g_key, v_key = _POS_CONV + g_name, _POS_CONV + v_name
    if g_key in tensors and v_key in tensors:
      g = tensors.pop(g_key).astype(np.float64)
      v = tensors.pop(v_key).astype(np.float64)
      norm = np.sqrt(np.sum(v * v, axis=(0, 1), keepdims=True))
      tensors[_POS_CONV + "weight"] = (g * v / norm).astype(np.float32)
      return tensors
  if _POS_CONV + "weight" not in tensors:
    raise TalkjaxError("the positional conv weights (encoder.pos_conv_embed.conv.weight_g/_v) "
                       "are missing", path=path, fix="pass a complete wav2vec2 checkpoint")
  return tensors


def _flax_key(hf_key: str, array: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
  """torch_names.to_flax, except that a 1-D weight is a scale only for the layer norms
  (wav2vec2 has no other 1-D weights; anything else is refused)."""
  *module, leaf = module_path(hf_key)
  if leaf == "weight" and array.ndim == 1 and module[-1:] not in (["layer_norm"],
                                                                   ["final_layer_norm"]):
    raise KeyError(hf_key)
  return to_flax(hf_key, array)


def hf_to_flax(tensors: dict, config: Wav2Vec2Config, path: str = "") -> dict:
  """Nested Flax params for `Wav2Vec2Model(config)` from a Hugging Face state dict."""
  tensors = _fold_weight_norm(_strip_prefix(dict(tensors)), path)
  expected = _flatten(init_params_shapes(config))
  flat = {}
  for hf_key, array in tensors.items():
    try:
      key, value = _flax_key(hf_key, np.asarray(array, np.float32))
    except KeyError:
      raise TalkjaxError(f"unexpected tensor {hf_key!r} for a wav2vec2 model", path=path or None,
                         fix="check that the folder holds a wav2vec2 checkpoint") from None
    if key not in expected:
      raise TalkjaxError(f"tensor {hf_key!r} has no place in the model built from config.json",
                         path=path or None, fix="check config.json matches the weights")
    if tuple(expected[key]) != value.shape:
      raise TalkjaxError(f"tensor {hf_key!r} has shape {value.shape}, the model expects "
                         f"{tuple(expected[key])}", path=path or None,
                         fix="check config.json matches the weights")
    flat[key] = value
  missing = sorted("/".join(k) for k in expected if k not in flat)
  if missing:
    raise TalkjaxError(f"{len(missing)} weights missing from the checkpoint, e.g. {missing[0]}",
                       path=path or None, fix="pass a complete wav2vec2 checkpoint")
  return _unflatten(flat)


def init_params_shapes(config: Wav2Vec2Config) -> dict:
  import jax
  shapes = jax.eval_shape(lambda: init_params(config, num_samples=4000))
  return jax.tree.map(lambda s: s.shape, shapes)


def convert_folder(src: os.PathLike | str, out: os.PathLike | str) -> Wav2Vec2Config:
  """Read a Hugging Face wav2vec2 folder, write a talkjax weight folder."""
  src, out = os.fspath(src), os.fspath(out)
  config_path = os.path.join(src, "config.json")
  if not os.path.isfile(config_path):
    raise TalkjaxError("config.json not found in the source folder", path=src,
                       fix="pass the Hugging Face model folder (with config.json) as --src")
  with open(config_path) as f:
    try:
      hf_config = json.load(f)
    except json.JSONDecodeError as e:
      raise TalkjaxError(f"config.json is not valid JSON ({e})", path=config_path) from None
  config = Wav2Vec2Config.from_hf_dict(hf_config, config_path)
  params = hf_to_flax(read_checkpoint_folder(src), config, src)
  write_talkjax_folder(out, config, params)
  return config


def write_talkjax_folder(out: str, config: Wav2Vec2Config, params: dict) -> None:
  from safetensors.numpy import save_file
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "config.json"), "w") as f:
    json.dump({"talkjax_model": "wav2vec2", **config.to_dict()}, f, indent=2)
  flat = {"/".join(k): np.ascontiguousarray(v, np.float32) for k, v in _flatten(params).items()}
  save_file(flat, os.path.join(out, "params.safetensors"))
