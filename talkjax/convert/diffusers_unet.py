"""diffusers `UNet2DConditionModel` folders -> talkjax's Flax UNet config and parameters.

The Flax UNet (talkjax/nn/unet.py) names its modules like diffusers', so tensors map by
name through `torch_names.to_flax`; a few keep a different layout and are reshaped (never
transposed beyond to_flax's standard moves), only when the size matches exactly:
- attention `to_q/to_k/to_v` (in, heads*head_dim) -> (in, heads, head_dim) and
  `to_out.0` (heads*head_dim, out) -> (heads, head_dim, out);
- the GEGLU `ff.net.0.proj` (in, 2*inner) -> (in, 2, inner) (value half, gate half);
- `proj_in`/`proj_out` saved as 1x1 convs (use_linear_projection false) -> dense kernels.
Config fields that would change the network in ways this model does not implement
(class/addition embeddings, other block types, ...) are refused by name.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from talkjax.convert.checkpoint_files import (
  read_checkpoint_folder,
  read_safetensors,
  read_torch_bin,
)
from talkjax.convert.torch_names import Path, place, to_flax
from talkjax.errors import TalkjaxError
from talkjax.nn.unet import (
  DOWN_BLOCK_TYPES,
  MID_BLOCK_TYPES,
  UP_BLOCK_TYPES,
  UNetConfig,
  param_shapes,
)

_WEIGHTS = "diffusion_pytorch_model"
_FIELDS = {f for f in UNetConfig.__dataclass_fields__}
# Fields whose value must be the neutral one (the model has no such part).
_NEUTRAL: dict[str, tuple] = {
    "class_embed_type": (None,), "addition_embed_type": (None,), "num_class_embeds": (None,),
    "encoder_hid_dim": (None,), "encoder_hid_dim_type": (None,),
    "time_cond_proj_dim": (None,), "dual_cross_attention": (False,),
    "only_cross_attention": (False,), "mid_block_only_cross_attention": (None, False),
    "time_embedding_type": ("positional",), "timestep_post_act": (None,),
    "time_embedding_act_fn": (None,), "conv_in_kernel": (3,), "conv_out_kernel": (3,),
    "act_fn": ("silu", "swish"), "attention_type": ("default",),
    "class_embeddings_concat": (False,), "cross_attention_norm": (None,),
    "addition_time_embed_dim": (None,), "projection_class_embeddings_input_dim": (None,),
    "num_attention_heads": (None,), "reverse_transformer_layers_per_block": (None,),
}
# Fields without effect on the supported blocks or at inference.
_IGNORED = {"dropout", "resnet_skip_time_act", "resnet_out_scale_factor",
            "addition_embed_type_num_heads"}


def config_from_diffusers(config: Mapping[str, Any], path=None) -> UNetConfig:
  """UNetConfig from a diffusers UNet2DConditionModel config.json dict."""
  fix = "this importer reads Stable Diffusion 1.x-style UNets"
  name = config.get("_class_name", "UNet2DConditionModel")
  if name != "UNet2DConditionModel":
    raise TalkjaxError(f"config.json describes a {name}, not a UNet2DConditionModel",
                       path=path, fix=fix)
  bad = []
  for key, value in config.items():
    if key.startswith("_") or key in _FIELDS or key in _IGNORED:
      continue
    neutral = _NEUTRAL.get(key, (None,))
    if isinstance(value, list) and key == "only_cross_attention":
      value = any(value)
    if value not in neutral:
      bad.append(f"{key}={value!r}")
  if bad:
    raise TalkjaxError(f"unsupported UNet config field(s): {', '.join(bad)}", path=path,
                       fix=fix + "; those fields must be left at their defaults")
  values = {k: v for k, v in config.items() if k in _FIELDS}
  strip = lambda t: t[len("UNetRes"):] if isinstance(t, str) and t.startswith("UNetRes") else t
  for key, known in (("down_block_types", DOWN_BLOCK_TYPES), ("up_block_types", UP_BLOCK_TYPES)):
    if key in values:
      values[key] = [strip(t) for t in values[key]]
      unknown = [t for t in values[key] if t not in known]
      if unknown:
        raise TalkjaxError(f"unsupported UNet {key}: {unknown}", path=path,
                           fix=f"supported: {list(known)}")
  if values.get("mid_block_type", MID_BLOCK_TYPES[0]) not in MID_BLOCK_TYPES:
    raise TalkjaxError(f"unsupported UNet mid_block_type: {values['mid_block_type']!r}",
                       path=path, fix="supported: UNetMidBlock2DCrossAttn or null")
  if values.get("norm_num_groups", 32) is None:
    raise TalkjaxError("norm_num_groups=null (no group norms) is not supported", path=path,
                       fix=fix)
  tlpb = values.get("transformer_layers_per_block", 1)
  if isinstance(tlpb, list) and any(isinstance(v, list) for v in tlpb):
    raise TalkjaxError("per-layer transformer_layers_per_block lists are not supported",
                       path=path, fix="give one count per block")
  try:
    return UNetConfig(**values)
  except TalkjaxError as e:
    raise TalkjaxError(e.what, path=path, fix=e.fix) from None


def _reshaped(flax_key: Path, value: np.ndarray, want: tuple | None) -> np.ndarray:
  """`value` in the Flax layout `want` where the two differ by a known split of an axis."""
  if want is None or value.shape == tuple(want):
    return value
  module, leaf = flax_key[-2], flax_key[-1]
  want = tuple(want)
  fits = False
  if module in ("to_q", "to_k", "to_v") and leaf == "kernel" and len(want) == 3:
    fits = value.shape == (want[0], want[1] * want[2])
  elif module == "to_out_0" and leaf == "kernel" and len(want) == 3:
    fits = value.shape == (want[0] * want[1], want[2])
  elif module == "proj" and flax_key[-3:-2] == ("net_0",):
    fits = (leaf == "kernel" and len(want) == 3 and value.shape == (want[0], want[1] * want[2])
            or leaf == "bias" and len(want) == 2 and value.shape == (want[0] * want[1],))
  elif module in ("proj_in", "proj_out") and leaf == "kernel" and len(want) == 2:
    fits = value.shape == (1, 1) + want
  return value.reshape(want) if fits and value.size == math.prod(want) else value


def params_from_diffusers(tensors: Mapping[str, np.ndarray], config: UNetConfig,
                          path=None) -> tuple[dict, list[str]]:
  """(Flax params for UNet2DConditionModel(config), report lines) from a diffusers state
  dict; one TalkjaxError names every missing, unexpected and mis-shaped tensor."""
  expected = param_shapes(config)

  def convert(key, array):
    flax_key, value = to_flax(key, array)
    return flax_key, _reshaped(flax_key, value, expected.get(flax_key))

  return place(tensors, expected, what="diffusers UNet", path=path, convert=convert,
               fix="check that config.json matches the weights (a UNet2DConditionModel "
                   "state dict)")


def weight_files(folder: str, variant: str | None) -> list[str] | None:
  stem = _WEIGHTS + (f".{variant}" if variant else "")
  for ext in (".safetensors", ".bin"):
    single = os.path.join(folder, stem + ext)
    if os.path.isfile(single):
      return [single]
    index = os.path.join(folder, stem + ext + ".index.json")
    if os.path.isfile(index):
      with open(index) as f:
        shards = sorted(set(json.load(f).get("weight_map", {}).values()))
      return [os.path.join(folder, s) for s in shards]
  return None


def load_diffusers_unet(folder: os.PathLike | str, variant: str | None = None
                        ) -> tuple[UNetConfig, dict, list[str]]:
  """(config, params, report) from a diffusers UNet folder (config.json +
  diffusion_pytorch_model[.variant].safetensors or .bin, possibly sharded) or from a
  pipeline folder holding one in `unet/`. `variant` picks e.g. the "fp16" files."""
  folder = os.fspath(folder)
  if not os.path.isfile(os.path.join(folder, "config.json")) and os.path.isfile(
      os.path.join(folder, "unet", "config.json")):
    folder = os.path.join(folder, "unet")
  config_path = os.path.join(folder, "config.json")
  if not os.path.isfile(config_path):
    raise TalkjaxError("no config.json here or in unet/", path=folder,
                       fix="point at a diffusers UNet folder or a pipeline folder")
  try:
    with open(config_path) as f:
      raw = json.load(f)
  except json.JSONDecodeError as e:
    raise TalkjaxError(f"config.json is not valid JSON ({e})", path=config_path) from None
  config = config_from_diffusers(raw, path=config_path)
  files = weight_files(folder, variant)
  if files is None and variant:
    raise TalkjaxError(f"no {_WEIGHTS}.{variant}.safetensors or .bin in the folder",
                       path=folder, fix="check the variant name, or pass variant=None")
  if files is None:
    tensors = read_checkpoint_folder(folder)
  else:
    tensors = {}
    for file in files:
      if not os.path.isfile(file):
        raise TalkjaxError("a weight shard named in the index is missing", path=file,
                           fix="download every shard of the checkpoint")
      tensors.update(read_safetensors(file) if file.endswith(".safetensors")
                     else read_torch_bin(file))
  params, report = params_from_diffusers(tensors, config, path=folder)
  return config, params, report
