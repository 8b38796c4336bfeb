"""diffusers AutoencoderKL folders (config.json + weights) -> talkjax VAEConfig and Flax params.

The Flax AutoencoderKL (talkjax/nn/vae.py) uses diffusers' module names, so every tensor
maps through `torch_names.to_flax`. One layout needs care: the mid-block attention. Current
diffusers stores it as `to_q`/`to_k`/`to_v`/`to_out.0` Linear weights (out, in); checkpoints
written before diffusers' attention refactor name it `query`/`key`/`value`/`proj_attn`, and
some conversions keep the original 1x1-conv layout (out, in, 1, 1). All three are read.

`load_diffusers_vae` accepts the VAE folder itself or a whole pipeline folder (with
model_index.json and a `vae/` subfolder), safetensors or PyTorch .bin.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from talkjax.convert.checkpoint_files import read_checkpoint_folder
from talkjax.convert.torch_names import Path, place, to_flax
from talkjax.errors import TalkjaxError
from talkjax.nn.vae import VAEConfig, expected_shapes


def _ints(value):
  return tuple(int(v) for v in value)


def _optional(kind):
  return lambda value: None if value is None else kind(value)


# diffusers field -> how its JSON value becomes a VAEConfig field.
_FIELDS = {
    "in_channels": int, "out_channels": int, "block_out_channels": _ints,
    "layers_per_block": int, "latent_channels": int, "norm_num_groups": int,
    "sample_size": lambda v: _ints(v) if isinstance(v, (list, tuple)) else int(v),
    "scaling_factor": float, "shift_factor": _optional(float),
    "latents_mean": _optional(lambda v: tuple(float(x) for x in v)),
    "latents_std": _optional(lambda v: tuple(float(x) for x in v)),
    "use_quant_conv": bool, "use_post_quant_conv": bool, "mid_block_add_attention": bool,
    "force_upcast": bool,
}
# Fields whose only supported values are these.
_FIXED = {"act_fn": ("silu", "swish"), "norm_type": ("group",)}
_PER_BLOCK = {"down_block_types": "DownEncoderBlock2D", "up_block_types": "UpDecoderBlock2D"}
# Attention names before diffusers' refactor -> current names.
_LEGACY_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def config_from_diffusers(config: Mapping[str, Any], path=None) -> VAEConfig:
  """VAEConfig from the dict of a diffusers AutoencoderKL config.json.

  Raises TalkjaxError for another model class or a field this Flax model does not build
  (another block type, activation or norm, an unknown field)."""
  fix = "pass the config.json of a diffusers AutoencoderKL (e.g. a Stable Diffusion vae/)"
  if not isinstance(config, Mapping):
    raise TalkjaxError("config.json does not hold a JSON object", path=path, fix=fix)
  name = config.get("_class_name", "AutoencoderKL")
  if name != "AutoencoderKL":
    raise TalkjaxError(f"config.json describes a {name}, not an AutoencoderKL", path=path,
                       fix=fix)
  values: dict[str, Any] = {}
  for key, value in config.items():
    if key.startswith("_"):
      continue
    if key in _FIXED:
      if value not in _FIXED[key]:
        raise TalkjaxError(f"{key} {value!r} is not supported (only {_FIXED[key][0]!r})",
                           path=path, fix=fix)
    elif key in _PER_BLOCK:
      kinds = list(value) if isinstance(value, (list, tuple)) else [value]
      if any(k != _PER_BLOCK[key] for k in kinds):
        raise TalkjaxError(f"{key} {kinds} is not supported (only {_PER_BLOCK[key]})",
                           path=path, fix=fix)
    elif key in _FIELDS:
      try:
        values[key] = _FIELDS[key](value)
      except (TypeError, ValueError):
        raise TalkjaxError(f"config field {key} has the value {value!r} of the wrong type",
                           path=path, fix=fix) from None
    else:
      raise TalkjaxError(f"config field {key!r} is not supported by talkjax's AutoencoderKL",
                         path=path, fix=fix)
  n_blocks = len(values.get("block_out_channels", VAEConfig.block_out_channels))
  for key in _PER_BLOCK:
    count = len(config[key]) if isinstance(config.get(key), (list, tuple)) else 1
    if key in config and count != n_blocks:
      raise TalkjaxError(f"{key} has {count} entries for {n_blocks} block_out_channels",
                         path=path, fix=fix)
  return VAEConfig(**values).validate(path)


def _convert(torch_key: str, array: np.ndarray) -> tuple[Path, np.ndarray]:
  parts = torch_key.split(".")
  if "attentions" in parts:
    i = parts.index("attentions") + 2  # attentions.<n>.<projection>
    if i < len(parts) and parts[i] in _LEGACY_ATTENTION:
      parts[i:i + 1] = _LEGACY_ATTENTION[parts[i]].split(".")
      torch_key = ".".join(parts)
    array = np.asarray(array)
    projection = parts[i] if i < len(parts) else ""
    if (projection in ("to_q", "to_k", "to_v", "to_out") and parts[-1] == "weight"
        and array.ndim == 4 and array.shape[2:] == (1, 1)):
      array = array[:, :, 0, 0]
  return to_flax(torch_key, array)


def params_from_diffusers(tensors: Mapping[str, np.ndarray], config: VAEConfig,
                          path=None) -> tuple[dict, list[str]]:
  """(Flax params of `AutoencoderKL(config)`, report lines) from a diffusers state dict.

  Raises one TalkjaxError naming every missing, unexpected and mis-shaped tensor."""
  return place(tensors, expected_shapes(config), what="diffusers AutoencoderKL", path=path,
               convert=_convert,
               fix="check that config.json belongs to these weights (a complete "
                   "diffusers AutoencoderKL state dict)")


def vae_folder(folder: os.PathLike | str) -> str:
  """The folder holding the VAE's config.json: `folder` itself, or its `vae/` subfolder
  when `folder` is a whole diffusers pipeline."""
  folder = os.fspath(folder)
  if not os.path.isdir(folder):
    raise TalkjaxError("VAE folder not found", path=folder,
                       fix="pass a diffusers AutoencoderKL folder or a pipeline folder")
  sub = os.path.join(folder, "vae")
  is_pipeline = os.path.isfile(os.path.join(folder, "model_index.json"))
  if os.path.isdir(sub) and (is_pipeline or not os.path.isfile(os.path.join(folder,
                                                                             "config.json"))):
    folder = sub
  if not os.path.isfile(os.path.join(folder, "config.json")):
    raise TalkjaxError("no config.json in the VAE folder", path=folder,
                       fix="pass a diffusers AutoencoderKL folder (config.json + "
                           "diffusion_pytorch_model.safetensors) or a pipeline with vae/")
  return folder


def read_config(folder: os.PathLike | str) -> VAEConfig:
  config_path = os.path.join(os.fspath(folder), "config.json")
  with open(config_path) as f:
    try:
      raw = json.load(f)
    except json.JSONDecodeError as e:
      raise TalkjaxError(f"config.json is not valid JSON ({e})", path=config_path,
                         fix="re-download or re-save the VAE") from None
  return config_from_diffusers(raw, config_path)


def load_diffusers_vae(folder: os.PathLike | str) -> tuple[VAEConfig, dict, list[str]]:
  """(config, Flax params, report lines) of a diffusers AutoencoderKL folder or pipeline."""
  folder = vae_folder(folder)
  config = read_config(folder)
  params, report = params_from_diffusers(read_checkpoint_folder(folder), config, folder)
  return config, params, report
