"""Pretrained weights MEMO starts from, read once when training starts from scratch.

- `model.weights.vae` (required): the image autoencoder whose latents MEMO denoises, frozen:
  a folder written by `talkjax convert diffusers` (the SD "ft-mse" VAE for the paper
  configs) or a training folder of the `vae` family (the tiny SynthTalk VAE,
  experiments/memo/synthtalk_tiny_vae.py).
- `model.weights.unet` (optional, stage 1): a converted SD 1.5 UNet whose weights fill the
  ReferenceNet and the DiffusionNet's spatial layers (the paper's starting point); the
  audio, memory and projection modules keep their fresh initialisation.
Each must match the config's shapes; a mismatch names the parameter and both shapes.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from talkjax.errors import ConfigError, TalkjaxError


def _read(path: str, kind: str, family: str):
  """(talkjax config dataclass or None, params) from a converted folder or a training folder."""
  folder = pathlib.Path(path).expanduser()
  if (folder / "checkpoints").is_dir():
    from talkjax import stages
    trained = stages.read_params(folder)
    if trained.config.get("family") != family:
      raise TalkjaxError(f"this training folder holds a {trained.config.get('family')!r} model, "
                         f"not {family!r}", path=folder, fix=f"name a {family} training folder")
    return None, trained.params["trainable"][kind]
  from talkjax.convert.diffusers import load_converted
  got, config, params = load_converted(folder)
  if got != kind:
    raise TalkjaxError(f"this converted folder holds a {got!r}, not a {kind!r}", path=folder,
                       fix=f"name the {kind} folder that `talkjax convert diffusers` wrote")
  return config, params


def _check_config(got, want, path: str, what: str) -> None:
  if got is None:
    return
  diff = {f.name: (getattr(got, f.name), getattr(want, f.name))
          for f in dataclasses.fields(want) if f.name in {g.name for g in dataclasses.fields(got)}
          and f.name != "sample_size" and getattr(got, f.name) != getattr(want, f.name)}
  if diff:
    name, (g, w) = next(iter(diff.items()))
    raise TalkjaxError(f"the {what} in this folder has {name}={g}, the config says {w}"
                       + (f" (and {len(diff) - 1} more differences)" if len(diff) > 1 else ""),
                       path=path, fix=f"set model.{what} to the folder's config, or name "
                                      "another folder")


def initial_values(config) -> dict:
  from talkjax.models.memo.builders import memo_config, vae_config
  w = config.model.get("weights", {})
  if not w.get("vae"):
    raise ConfigError("MEMO denoises VAE latents and model.weights.vae names no VAE",
                      fix="convert the SD VAE (talkjax convert diffusers --src sd-vae-ft-mse "
                          "--out weights/sd-vae) or train the tiny one (talkjax train --config "
                          "memo/synthtalk_tiny_vae --workdir runs/memo_tiny_vae), then set "
                          "model.weights.vae to that folder")
  vae_cfg, vae = _read(w.vae, "vae", "vae")
  _check_config(vae_cfg, vae_config(config.model), w.vae, "vae")
  values = {"frozen": {"vae": vae}}
  if w.get("unet"):
    unet_cfg, unet = _read(w.unet, "unet", "unet")
    _check_config(unet_cfg, memo_config(config.model).unet, w.unet, "unet")
    values["trainable"] = {"reference_net": unet, "diffusion_net": unet}
  return to_host(values)


def to_host(tree):
  """Host numpy leaves (what `initial_values` returns)."""
  if isinstance(tree, dict):
    return {k: to_host(v) for k, v in tree.items()}
  return np.asarray(tree)
