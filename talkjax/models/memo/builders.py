"""MEMO's network settings from an experiment config (`config.model`)."""

from __future__ import annotations

from talkjax.errors import ConfigError
from talkjax.models.memo.networks import MemoConfig, MemoryConfig
from talkjax.nn.unet import UNetConfig
from talkjax.nn.vae import VAEConfig

IDENTITY_ENCODERS = ("learned", "given")
MODULES = ("reference", "audio", "memory")
OUTPUTS = ("velocity", "preconditioned")
ANCHORS = ("none", "last_past")


def memo_config(model) -> MemoConfig:
  """model.unet (diffusers UNet2DConditionModel fields), model.memory, model.audio,
  model.identity, model.emotion -> the frozen MemoConfig the networks are built from."""
  unet = UNetConfig(**dict(model.unet))
  a, i, e = model.audio, model.identity, model.emotion
  if i.encoder not in IDENTITY_ENCODERS:
    raise ConfigError(f"unknown model.identity.encoder {i.encoder!r}",
                      fix=f"use one of {IDENTITY_ENCODERS}: 'given' reads face embeddings "
                          "from the data, 'learned' encodes the reference image")
  if unet.in_channels != unet.out_channels:
    raise ConfigError(f"model.unet in_channels {unet.in_channels} != out_channels "
                      f"{unet.out_channels}", fix="MEMO denoises latents in place: make them equal")
  # a converted release's model config has no training recipe (model.flow): velocity
  flow = model.get("flow") or {}
  output = flow.get("output", "velocity")
  if output not in OUTPUTS:
    raise ConfigError(f"unknown model.flow.output {output!r}",
                      fix=f"use one of {OUTPUTS}: 'velocity' is the release's")
  anchor, anchor_std = flow.get("anchor", "none"), float(flow.get("anchor_std", 1.0))
  if anchor not in ANCHORS:
    raise ConfigError(f"unknown model.flow.anchor {anchor!r}", fix=f"use one of {ANCHORS}")
  if anchor != "none" and (output != "preconditioned" or int(model.clip.past) < 1
                           or anchor_std <= 0):
    raise ConfigError(f"model.flow.anchor {anchor!r} needs model.flow.output "
                      "'preconditioned', model.clip.past >= 1 and anchor_std > 0",
                      fix="set them, or model.flow.anchor='none'")
  modules = tuple(model.get("modules", ("reference", "audio", "memory")))
  unknown = sorted(set(modules) - set(MODULES))
  if unknown or "reference" not in modules:
    raise ConfigError(f"model.modules {modules} must hold 'reference' and may add "
                      f"{MODULES[1:]}", fix="stage 1: ('reference',); stage 2: all three")
  if "memory" in modules and int(model.clip.past) < 1:
    raise ConfigError("the memory modules read the past frames and model.clip.past is 0",
                      fix="give model.clip.past frames (16 in the paper) or drop 'memory'")
  return MemoConfig(unet=unet, memory=MemoryConfig(**dict(model.memory)), modules=modules,
                    audio_dim=a.dim, audio_tokens=a.tokens, audio_window=a.window,
                    audio_layers=a.layers, audio_channels=a.channels, audio_hidden=a.hidden,
                    identity_dim=i.dim, image_tokens=i.tokens, emotions=e.classes,
                    emotion_dropout=e.dropout, output=output,
                    anchor=anchor, anchor_std=anchor_std,
                    portrait_input=bool(model.get("portrait_input", False)))


def vae_config(model) -> VAEConfig:
  fields = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in dict(model.vae).items()}
  return VAEConfig(**fields).validate()
