"""A first stage judged by what it lets the generator reach.

The first stage of IF-MDM and INFP redraws a portrait by a motion code that its encoder
reads from a driving frame; stage 2 only generates such codes. No generated video can
show what the renderer cannot draw, so redrawing each held-out clip from its first frame by
the codes of its own ground-truth frames, and judging that video by the generators' marks,
measures the ceiling a stage 2 works under. (INFP's tiny stage 1 after 10000 steps kept
every pupil where the portrait had it: the probe read the speaking state on 0.88 of the
redrawn frames, so no stage 2 could reach the 0.9 mark; experiments/infp/README.md.)

A latent family's VAE (MEMO's) is the same kind of ceiling: a latent diffusion model
generates latents that the VAE decodes, so each held-out clip's frames encoded and decoded
again show what the best possible latents look like (a mouth the 4x-downsampled latent of a
64 px frame cannot hold is lost to every generator on it).

`talkjax eval model --checkpoint <a stage-1 or VAE folder>` runs it: `ceiling(checkpoint)`
gives the `generate` that `evaluate_generator(..., give_truth=True)` calls.
"""

from __future__ import annotations

import numpy as np

CHUNK = 50   # frames encoded and rendered per call (one compilation for any clip length)


def _stage(checkpoint, task_class):
  """The trained parameters (stages.Trained) of a training folder whose task is a
  `task_class`, or None when `checkpoint` is something else (a generator, a model file)."""
  import pathlib

  from talkjax import stages
  from talkjax.models import FAMILIES, make_task
  path = pathlib.Path(checkpoint).expanduser()
  if not (path / "checkpoints").is_dir():
    return None
  config = stages.checkpoint_config(path)[0]
  if config.get("family") not in FAMILIES or not isinstance(make_task(config), task_class):
    return None
  return stages.read_params(path)


def renderer_stage(checkpoint):
  """A renderer stage's trained parameters (IF-MDM or INFP stage 1), or None."""
  from talkjax.models.renderer_task import RendererTask
  return _stage(checkpoint, RendererTask)


def vae_stage(checkpoint):
  """A `vae` family training folder's trained parameters, or None."""
  from talkjax.models.vae.tasks import VAETask
  return _stage(checkpoint, VAETask)


def ceiling(checkpoint):
  """(redraw, trained, what it measures) for a renderer stage's or a VAE's training folder,
  or None when `checkpoint` is a generator."""
  trained = renderer_stage(checkpoint)
  if trained is not None:
    return (redrawer(trained), trained, "each clip redrawn from its first frame by the "
            "motion codes of its own ground-truth frames (a renderer stage's ceiling)")
  trained = vae_stage(checkpoint)
  if trained is not None:
    return (vae_redrawer(trained), trained, "each ground-truth frame encoded by the VAE "
            "(posterior mean) and decoded again (a latent generator's ceiling)")
  return None


def redrawer(trained, chunk: int = CHUNK):
  """`redraw(image, audio, truth=frames, **ignored) -> frames`: `truth` (T, R, R, 3) uint8
  redrawn from `image` by the motion codes of its own frames (the audio is not used)."""
  import jax

  from talkjax.models import make_task
  from talkjax.nn.motion_renderer import render_frames, to_model_image
  model = make_task(trained.config).generator
  params = trained.params["trainable"]["generator"]
  apply = lambda method, x: model.apply({"params": params}, to_model_image(x), method=method)
  encode_motion = jax.jit(lambda x: apply(model.encode_motion, x))
  encode_appearance = jax.jit(lambda x: apply(model.encode_appearance, x))
  render = jax.jit(lambda a, m: render_frames(model, params, a, m))

  def redraw(image, audio, truth=None, **_):
    del audio
    if truth is None:
      raise ValueError("a renderer redraws ground truth: pass truth=frames")
    n = len(truth)
    padded = np.concatenate([truth, np.repeat(truth[-1:], -n % chunk, axis=0)])
    appearance = encode_appearance(np.asarray(image)[None])
    pieces = []
    for start in range(0, len(padded), chunk):
      codes = encode_motion(padded[start:start + chunk])
      pieces.append(np.asarray(render(appearance, codes[None]))[0])
    return np.concatenate(pieces)[:n]
  return redraw


def vae_redrawer(trained, chunk: int = CHUNK):
  """`redraw(image, audio, truth=frames, **ignored) -> frames`: each of the `truth` (T, R, R, 3)
  uint8 frames through the VAE (posterior mean in, decoded frame out)."""
  from talkjax.models.vae.tasks import VAETask
  task = VAETask(trained.config)
  params = trained.params["trainable"]["vae"]

  def redraw(image, audio, truth=None, **_):
    del image, audio
    if truth is None:
      raise ValueError("a VAE redraws ground truth: pass truth=frames")
    pixels = np.asarray(truth, np.float32) / 127.5 - 1.0
    decoded = task.vae.decode_frames(params, task.vae.encode_frames(params, pixels, chunk), chunk)
    return np.clip(np.round((decoded + 1.0) * 127.5), 0, 255).astype(np.uint8)
  return redraw
