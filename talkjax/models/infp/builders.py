"""INFP's networks from their configs, and the trained stage 1 that stage 2 reads."""

from __future__ import annotations

from talkjax import stages
from talkjax.audio.frame_features import check_level
from talkjax.errors import ConfigError, TalkjaxError
from talkjax.models.infp.denoiser import MotionDenoiser
from talkjax.models.infp.guider import InteractiveMotionGuider, StyleEncoder
from talkjax.models.infp.imitation import DEFAULT_REGIONS, HeadImitation
from talkjax.models.infp.portrait import PortraitEncoder
from talkjax.nn.motion_renderer import Discriminator


def regions(model_config) -> tuple:
  boxes = tuple(tuple(float(v) for v in box) for box in model_config.get("regions", DEFAULT_REGIONS))
  for box in boxes:
    top, left, bottom, right = box if len(box) == 4 else (None,) * 4
    if top is None or not (0 <= top < bottom <= 1 and 0 <= left < right <= 1):
      raise ConfigError(f"model.regions box {box} is not (top, left, bottom, right) fractions "
                        "of the face crop with top < bottom and left < right",
                        fix="e.g. model.regions=((0.18,0.12,0.52,0.88),(0.55,0.22,0.9,0.78))")
  return boxes


def build_imitation(model_config, dtype=None) -> HeadImitation:
  m = model_config
  if m.latent < m.directions:
    raise ConfigError(f"model.latent ({m.latent}) must be >= model.directions ({m.directions})",
                      fix=f"set model.latent to at least {m.directions}")
  scale = 2 ** (len(m.channels) + 1)
  if not 64 <= m.resolution <= 512 or m.resolution % scale:
    raise ConfigError(f"model.resolution {m.resolution} must be in 64..512 and a multiple of "
                      f"{scale} for {len(m.channels)} model.channels",
                      fix=f"use a multiple of {scale}, or fewer model.channels")
  return HeadImitation(resolution=int(m.resolution), channels=tuple(m.channels),
                       latent=int(m.latent), directions=int(m.directions), regions=regions(m),
                       dtype=dtype)


def build_discriminator(model_config, dtype=None) -> Discriminator:
  return Discriminator(channels=tuple(model_config.disc_channels), dtype=dtype)


def build_guider(config, dtype=None) -> InteractiveMotionGuider:
  m = config.model
  check_level(m.audio)
  return InteractiveMotionGuider(hidden=int(m.hidden), verbal_slots=int(m.guider.verbal_slots),
                                 nonverbal_slots=int(m.guider.nonverbal_slots),
                                 heads=int(m.guider.heads),
                                 level=bool(m.audio.get("level", False)), dtype=dtype)


def build_style_encoder(config, dtype=None) -> StyleEncoder | None:
  m = config.model
  return StyleEncoder(hidden=int(m.hidden), heads=int(m.heads), dtype=dtype) if m.style.frames else None


def build_denoiser(config, dtype=None) -> MotionDenoiser:
  m = config.model
  if int(m.hidden) % int(m.heads) or int(m.hidden) % int(m.guider.heads):
    raise ConfigError(f"model.hidden ({m.hidden}) must split over model.heads ({m.heads}) and "
                      f"model.guider.heads ({m.guider.heads})", fix="pick divisors of model.hidden")
  return MotionDenoiser(window=int(m.window), previous=int(m.previous), hidden=int(m.hidden),
                        layers=int(m.layers), heads=int(m.heads), mlp_ratio=int(m.mlp_ratio),
                        dtype=dtype, remat=bool(config.train.remat),
                        anchor=bool(m.get("anchor", False)),
                        portrait=portrait_resolution(config) > 0)


def portrait_resolution(config) -> int:
  """The portrait encoder's input size (0: no portrait encoder)."""
  p = config.model.get("portrait")
  r = int(p.resolution) if p is not None else 0
  if r and (r < 16 or r % 2 ** len(p.channels)):
    raise ConfigError(f"model.portrait.resolution={r} must be 0 (off) or a multiple of "
                      f"{2 ** len(p.channels)} (its {len(p.channels)} downsamplings), >= 16",
                      fix="e.g. model.portrait.resolution=64")
  return r


def build_portrait_encoder(config, dtype=None) -> PortraitEncoder | None:
  if not portrait_resolution(config):
    return None
  return PortraitEncoder(hidden=int(config.model.hidden),
                         channels=tuple(config.model.portrait.channels), dtype=dtype)


def load_stage1(config) -> stages.Trained:
  """The trained stage-1 model that `config.stage1` ({workdir, config}) names: a training
  folder, or a model file of this family (its renderer)."""
  stage1 = stages.load_stage(config, "stage1", "infp_stage1",
                            from_model_file=stages.renderer_as_generator)
  if int(stage1.config.model.directions) != int(config.model.motion_dim):
    raise TalkjaxError(f"stage 1 has {stage1.config.model.directions} motion dimensions but "
                       f"model.motion_dim is {config.model.motion_dim}", path=stage1.workdir,
                       fix=f"set model.motion_dim={stage1.config.model.directions}")
  return stage1
