"""IF-MDM's networks from their configs, and the trained stage 1 that stage 2 reads."""

from __future__ import annotations

from talkjax import stages
from talkjax.audio.frame_features import check_level
from talkjax.errors import ConfigError, TalkjaxError
from talkjax.models.ifmdm.autoencoder import MotionAutoencoder
from talkjax.models.ifmdm.motion import MotionDiT
from talkjax.nn.motion_renderer import Discriminator


RENDERERS = ("fast", "paper")


def renderer_kind(model_config) -> str:
  """`model.renderer`: "fast" (autoencoder.py, light) or "paper" (paper_renderer.py)."""
  kind = model_config.get("renderer", "fast")
  if kind not in RENDERERS:
    raise ConfigError(f"unknown model.renderer {kind!r}", fix=f"use one of {RENDERERS}")
  return kind


def build_autoencoder(model_config, dtype=None):
  """Stage 1's generator (either renderer: the same interface)."""
  m = model_config
  if m.latent < m.directions:
    raise ConfigError(f"model.latent ({m.latent}) must be >= model.directions ({m.directions}): "
                      "the directions are orthonormal vectors in the latent space",
                      fix=f"set model.latent to at least {m.directions}")
  if renderer_kind(m) == "paper":
    from talkjax.models.ifmdm.paper_renderer import PaperMotionAutoencoder
    _paper_channels(m)
    # model.refine_channels: 0 = the widest scale's (512 at the paper's size).
    return PaperMotionAutoencoder(resolution=int(m.resolution), channels=tuple(m.channels),
                                  latent=m.latent, directions=m.directions,
                                  refine_channels=int(m.get("refine_channels", 0)) or None,
                                  dtype=dtype)
  scale = 2 ** (len(m.channels) + 1)  # one stride-2 block per channel entry, >= 2x2 at the end
  if not 64 <= m.resolution <= 512 or m.resolution % scale:
    valid = [r for r in range(scale, 513, scale) if r >= 64]
    raise ConfigError(f"model.resolution {m.resolution} must be in 64..512 and a multiple of "
                      f"{scale} (2 ** (len(model.channels) + 1), for {len(m.channels)} "
                      "model.channels)",
                      fix=f"use one of {', '.join(map(str, valid))}, or fewer model.channels "
                          "for smaller frames")
  return MotionAutoencoder(channels=tuple(m.channels), latent=m.latent, directions=m.directions,
                           dtype=dtype)


def build_discriminator(model_config, dtype=None):
  m = model_config
  if renderer_kind(m) == "paper":
    from talkjax.models.ifmdm.paper_renderer import PaperDiscriminator
    _paper_channels(m, "disc_channels")
    return PaperDiscriminator(resolution=int(m.resolution), channels=tuple(m.disc_channels),
                              dtype=dtype)
  return Discriminator(channels=tuple(m.disc_channels), dtype=dtype)


def _paper_channels(m, field: str = "channels"):
  from talkjax.models.ifmdm.paper_renderer import scale_channels
  try:
    return scale_channels(int(m.resolution), tuple(m[field]))
  except ValueError as e:
    valid = [r for r in (64, 128, 256, 512) if len(m[field]) <= r.bit_length() - 2]
    raise ConfigError(f"model.renderer='paper' with model.resolution={m.resolution} and "
                      f"model.{field}={tuple(m[field])}: {e}",
                      fix=f"use one of {', '.join(map(str, valid))} (a power of two with at "
                          f"least {len(m[field])} scales above 4 px), or fewer "
                          f"model.{field}") from None


def build_motion_dit(config, dtype=None) -> MotionDiT:
  m = config.model
  check_level(m.audio)
  return MotionDiT(window=m.window, hidden=m.hidden, layers=m.layers, heads=m.heads,
                   mlp_ratio=m.mlp_ratio, dtype=dtype, remat=bool(config.train.remat),
                   learn_sigma=bool(config.diffusion.get("learn_sigma", False)),
                   level=bool(m.audio.get("level", False)))


def load_stage1(config) -> stages.Trained:
  """The trained stage-1 model that `config.stage1` ({workdir, config}) names: a training
  folder, or a model file of this family (its renderer)."""
  stage1 = stages.load_stage(config, "stage1", "ifmdm_stage1",
                            from_model_file=stages.renderer_as_generator)
  if int(stage1.config.model.directions) != int(config.model.motion_dim):
    raise TalkjaxError(f"stage 1 has {stage1.config.model.directions} motion directions but "
                       f"model.motion_dim is {config.model.motion_dim}", path=stage1.workdir,
                       fix=f"set model.motion_dim={stage1.config.model.directions}")
  return stage1


def generator_params(stage1: stages.Trained):
  """Stage 1's renderer (the generator, without the discriminator)."""
  return stage1.params["trainable"]["generator"]
