"""diffusers folders (AutoencoderKL, UNet2DConditionModel) -> talkjax weight folders.

`talkjax convert diffusers --src DIR --out DIR` reads a diffusers model folder (config.json
+ diffusion_pytorch_model.safetensors or .bin; a .bin is read without executing pickled
code) or a whole pipeline folder (model_index.json with vae/ and unet/ subfolders, each
converted into the same-named subfolder of --out), and writes per model:

    config.json   {"format": "talkjax.diffusers/1", "kind": "vae" | "unet", "config": {...}}
    params/       an Orbax checkpoint of the Flax parameters (float32)
    report.txt    every tensor mapped: "torch name -> flax/path shape"

Everything is checked before anything is written: a tensor that is missing, unexpected or
mis-shaped stops the conversion with one error naming them (talkjax/convert/torch_names.py).
`load_converted(folder)` reads a converted folder back, optionally straight into a mesh's
shardings.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pathlib

from talkjax.errors import TalkjaxError

FORMAT = "talkjax.diffusers/1"
# diffusers class -> (talkjax kind, loader module, loader function, config class path)
MODELS = {
    "AutoencoderKL": ("vae", "talkjax.convert.diffusers_vae", "load_diffusers_vae",
                      "talkjax.nn.vae:VAEConfig"),
    "UNet2DConditionModel": ("unet", "talkjax.convert.diffusers_unet", "load_diffusers_unet",
                             "talkjax.nn.unet:UNetConfig"),
}


def _read_json(path: pathlib.Path) -> dict:
  try:
    return json.loads(path.read_text())
  except FileNotFoundError:
    raise TalkjaxError("config.json is missing", path=path.parent,
                       fix="pass a diffusers model folder (config.json + weights) or a "
                           "pipeline folder (model_index.json)") from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise TalkjaxError(f"not valid JSON ({e})", path=path, fix="re-download the model") from e


def model_folders(src) -> dict[str, pathlib.Path]:
  """{"": src} for a model folder; {"vae": src/vae, "unet": src/unet, ...} for a pipeline."""
  src = pathlib.Path(src).expanduser()
  if not src.is_dir():
    raise TalkjaxError("not a folder", path=src, fix="pass a diffusers model or pipeline folder")
  if (src / "model_index.json").exists():
    found = {}
    for sub in sorted(p for p in src.iterdir() if (p / "config.json").exists()):
      if _read_json(sub / "config.json").get("_class_name") in MODELS:
        found[sub.name] = sub
    if not found:
      raise TalkjaxError("this pipeline folder has no AutoencoderKL or UNet2DConditionModel",
                         path=src, fix="pass a Stable Diffusion-style pipeline folder")
    return found
  return {"": src}


def _class_name(folder: pathlib.Path) -> str:
  name = _read_json(folder / "config.json").get("_class_name")
  if name not in MODELS:
    raise TalkjaxError(f"config.json describes {name!r}, which talkjax does not import",
                       path=folder / "config.json",
                       fix="pass an AutoencoderKL or UNet2DConditionModel folder; supported: "
                           + ", ".join(MODELS))
  return name


def load_diffusers(folder) -> tuple[str, object, dict, list[str]]:
  """(kind, talkjax config, Flax params, report) of one diffusers model folder."""
  folder = pathlib.Path(folder)
  kind, module, function, _ = MODELS[_class_name(folder)]
  config, params, report = getattr(importlib.import_module(module), function)(folder)
  return kind, config, params, report


def write_converted(out, kind: str, config, params, report: list[str]) -> pathlib.Path:
  from talkjax.convert import weight_folder
  return weight_folder.write(out, {"format": FORMAT, "kind": kind,
                                   "config": dataclasses.asdict(config)}, params, report)


def convert_folder(src, out) -> list[tuple[str, pathlib.Path, int]]:
  """Converts every model of `src` (checked first, then written): [(kind, folder, tensors)]."""
  loaded = [(name, load_diffusers(folder)) for name, folder in model_folders(src).items()]
  done = []
  for name, (kind, config, params, report) in loaded:
    target = pathlib.Path(out) / name if name else pathlib.Path(out)
    done.append((kind, write_converted(target, kind, config, params, report), len(report)))
  return done


def _config_class(kind: str):
  for k, _, _, where in MODELS.values():
    if k == kind:
      module, name = where.split(":")
      return getattr(importlib.import_module(module), name)
  raise KeyError(kind)


def load_converted(folder, shardings=None) -> tuple[str, object, dict]:
  """(kind, config, params) of a folder written by `talkjax convert diffusers`. With
  `shardings` (a tree of NamedSharding matching the params) every array is read straight
  into its place on the mesh."""
  folder = pathlib.Path(folder).expanduser().absolute()
  meta = _read_json(folder / "config.json")
  if meta.get("format") != FORMAT:
    raise TalkjaxError("not a folder written by `talkjax convert diffusers`", path=folder,
                       fix="convert the diffusers folder first: talkjax convert diffusers "
                           "--src DIR --out DIR")
  cls = _config_class(meta["kind"])
  fields = {f.name for f in dataclasses.fields(cls)}
  config = cls(**{k: tuple(v) if isinstance(v, list) else v
                  for k, v in meta["config"].items() if k in fields})
  from talkjax.convert import weight_folder
  return meta["kind"], config, weight_folder.read_params(folder, shardings)
