"""The release's config.json files -> talkjax's MEMO model config (convert/memo_release.py).

Every setting talkjax's networks do not run is refused by name, before any tensor is read
into a model.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

from talkjax.convert.diffusers_unet import config_from_diffusers
from talkjax.errors import TalkjaxError

DOWNLOAD = ("download the whole model folder (huggingface-cli download memoavatar/memo "
            "--local-dir memo) and pass it as --src")
EMOTION_FEATURES = 1024      # emotion2vec_plus_large's width, the classifier's input
EMOTION_CLASSES = 9

# UNet3DConditionModel fields beyond the 2D UNet's, and what talkjax runs
_MEMORY_KWARGS = {"num_attention_heads", "num_transformer_block", "attention_block_types",
                  "temporal_position_encoding", "temporal_position_encoding_max_len",
                  "temporal_attention_dim_div", "zero_initialize"}



def read_json(path: pathlib.Path) -> dict:
  try:
    return json.loads(path.read_text())
  except FileNotFoundError:
    raise TalkjaxError("config.json is missing", path=path.parent, fix=DOWNLOAD) from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise TalkjaxError(f"not valid JSON ({e})", path=path, fix="re-download the file") from e


def _unet_3d_to_2d(raw: dict, path) -> tuple[dict, dict]:
  """The DiffusionNet's config.json -> (its spatial UNet as a 2D config, the memory and
  audio settings); a setting talkjax's DiffusionNet does not run is refused by name."""
  if raw.get("_class_name") not in (None, "UNet3DConditionModel"):
    raise TalkjaxError(f"diffusion_net/config.json describes a {raw['_class_name']}, not the "
                       "release's UNet3DConditionModel", path=path, fix=DOWNLOAD)
  spatial = {k: v for k, v in raw.items() if k not in (
      "motion_module_resolutions", "motion_module_kwargs", "unet_use_cross_frame_attention",
      "unet_use_temporal_attention", "use_inflated_groupnorm", "audio_attention_dim",
      "emo_drop_rate", "_class_name")}
  spatial["_class_name"] = "UNet2DConditionModel"
  for key in ("down_block_types", "up_block_types"):
    if key in spatial:
      spatial[key] = [t.replace("3D", "2D") for t in spatial[key]]
  if spatial.get("mid_block_type"):
    spatial["mid_block_type"] = spatial["mid_block_type"].replace("3D", "2D")
  bad = []
  if not raw.get("use_inflated_groupnorm", False):
    bad.append("use_inflated_groupnorm=false (group norms over all frames; talkjax "
               "normalises each frame)")
  for key in ("unet_use_cross_frame_attention", "unet_use_temporal_attention"):
    if raw.get(key):
      bad.append(f"{key}={raw[key]!r}")
  n = len(raw.get("block_out_channels", ()))
  resolutions = tuple(raw.get("motion_module_resolutions", (1, 2, 4, 8)))
  if not set(2 ** i for i in range(n)) <= set(resolutions):
    bad.append(f"motion_module_resolutions={list(resolutions)} (talkjax puts a memory module "
               "after every layer)")
  mk = dict(raw.get("motion_module_kwargs") or {})
  unknown = sorted(set(mk) - _MEMORY_KWARGS)
  if unknown:
    bad.append(f"motion_module_kwargs {unknown}")
  types = list(mk.get("attention_block_types", ("Temporal_Self", "Temporal_Self")))
  if any(t != "Temporal_Self" for t in types):
    bad.append(f"attention_block_types={types} (only Temporal_Self)")
  if mk.get("temporal_attention_dim_div", 1) != 1:
    bad.append(f"temporal_attention_dim_div={mk['temporal_attention_dim_div']}")
  if bad:
    raise TalkjaxError("diffusion_net/config.json asks for what talkjax's DiffusionNet does "
                       "not run: " + "; ".join(bad), path=path,
                       fix="this importer reads the release's MEMO checkpoint as published")
  # the release builds the memory modules' GroupNorm with 32 groups whatever the UNet uses
  memory = dict(heads=int(mk.get("num_attention_heads", 8)),
                blocks=int(mk.get("num_transformer_block", 2)), attentions=len(types),
                position_max_len=(int(mk.get("temporal_position_encoding_max_len", 24))
                                  if mk.get("temporal_position_encoding") else 0),
                decay=0.9, groups=32)
  extra = dict(memory=memory, audio_dim=int(raw.get("audio_attention_dim", 768)),
               emotion_dropout=float(raw.get("emo_drop_rate", 0.3)))
  return spatial, extra


def model_config(configs: dict[str, dict], tensors: dict[str, dict], folders: dict,
                 src: pathlib.Path) -> dict:
  """talkjax's `config.model` fields (what builders.memo_config reads) from the release's
  config.json files (shapes the configs do not state come from the tensors)."""
  ref_path = folders["reference_net"] / "config.json"
  diff_path = folders["diffusion_net"] / "config.json"
  ref_unet = config_from_diffusers(configs["reference_net"], path=ref_path)
  spatial, extra = _unet_3d_to_2d(configs["diffusion_net"], diff_path)
  diff_unet = config_from_diffusers(spatial, path=diff_path)
  if _shape_fields(ref_unet) != _shape_fields(diff_unet):
    diff = [k for k, v in _shape_fields(ref_unet).items() if _shape_fields(diff_unet)[k] != v]
    raise TalkjaxError(f"reference_net and diffusion_net differ in {', '.join(diff)}",
                       path=src, fix="talkjax runs both on one UNet layout: "
                                                "pass the release's folders unchanged")
  image, audio = configs["image_proj"], configs["audio_proj"]
  table = next((v for k, v in tensors["diffusion_net"].items()
                if k.endswith("norm1.class_embedder.embedding_table.weight")), None)
  if table is None:
    raise TalkjaxError("diffusion_net has no audio modules (no EmoAdaLN class table)",
                       path=folders["diffusion_net"], fix=DOWNLOAD)
  unet = {k: list(v) if isinstance(v, tuple) else v for k, v in _shape_fields(ref_unet).items()}
  return {
      "unet": unet,
      "memory": extra["memory"],
      "audio": dict(kind="wav2vec2", wav2vec2="", dim=extra["audio_dim"],
                    tokens=int(audio.get("context_tokens", 32)),
                    window=int(audio.get("seq_len", 5)), layers=int(audio.get("blocks", 12)),
                    channels=int(audio.get("channels", 768)),
                    hidden=int(audio.get("intermediate_dim", 512))),
      "identity": dict(encoder="given", dim=int(image.get("clip_embeddings_dim", 512)),
                       tokens=int(image.get("clip_extra_context_tokens", 4))),
      "emotion": dict(classes=int(table.shape[0]) - 1, dropout=extra["emotion_dropout"],
                      classifier=""),
      "modules": ["reference", "audio", "memory"],
  }


def _shape_fields(unet) -> dict:
  return {k: v for k, v in dataclasses.asdict(unet).items() if k != "sample_size"}


def check_projection_configs(configs: dict, model: dict, folders) -> None:
  """image_proj's token width must be the UNet's context width, audio_proj's the audio
  modules' (the shapes the DiffusionNet's attentions take)."""
  context = model["unet"]["cross_attention_dim"]
  context = context[0] if isinstance(context, list) else context
  for name, key, want in (("image_proj", "cross_attention_dim", context),
                          ("audio_proj", "output_dim", model["audio"]["dim"])):
    got = configs[name].get(key, 768)
    if got != want:
      raise TalkjaxError(f"{name}/config.json has {key}={got}, the DiffusionNet takes {want}",
                         path=folders[name] / "config.json", fix=DOWNLOAD)


def emotion_classifier_shapes(config: dict, path) -> dict[tuple, tuple]:
  """{flax path: shape} of the release's AudioEmotionClassifierModel from its config:
  Linear layers `layers.fc1` .. `layers.fcN` (ReLU between) from the 1024-d emotion2vec
  features to the 9 classes, `num_classifier_channels` wide; one layer is `layers`."""
  n = int(config.get("num_classifier_layers", 5))
  width = int(config.get("num_classifier_channels", 2048))
  if n < 1:
    raise TalkjaxError(f"num_classifier_layers={n}", path=path, fix=DOWNLOAD)
  if n == 1:
    return {("layers", "kernel"): (EMOTION_FEATURES, EMOTION_CLASSES),
            ("layers", "bias"): (EMOTION_CLASSES,)}
  sizes = [EMOTION_FEATURES] + [width] * (n - 1) + [EMOTION_CLASSES]
  out = {}
  for i in range(n):
    out[("layers", f"fc{i + 1}", "kernel")] = (sizes[i], sizes[i + 1])
    out[("layers", f"fc{i + 1}", "bias")] = (sizes[i + 1],)
  return out
