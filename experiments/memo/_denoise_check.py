"""Where a MEMO training folder fails: its clean-latent error at each noise level, given
ground truth's own past frames, beside what plain copying scores.

On held-out windows of a built SynthTalk set (a clip, the frames before it, the portrait,
the speech and emotion, as training reads them), each clip's latents are noised to fixed
levels sigma and the DiffusionNet's implied x0 = x_t - sigma v is compared with the truth.
Beside it: the same with one input taken away (no reference keys in attn1, an empty
memory, zero audio, the past frames replaced by copies of the portrait as the sampler's
first clip has them), and two copies that need no network (every frame = the portrait's
latent, = the last past frame's). A model whose error at sigma = 1 is above the copy of the
last past frame has not learnt to carry the face forward: its samples start from a face it
cannot draw. The last line splits the error at sigma 1 over four noise draws: how much the
clean frame changes with the draw (noise leaking through) and the error of their mean.

    python experiments/memo/_denoise_check.py runs/memo_tiny data/heldout_memo4s \
        --windows 8 --grid denoise.png

(A script, not a config: the leading underscore keeps it out of `talkjax train --config`.)
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from talkjax import stages
from talkjax.data.prepare import open_clips
from talkjax.diffusion import objectives
from talkjax.models.memo.data import ClipWindows
from talkjax.models.memo.tasks import MemoTask
from talkjax.nn.vae import AutoencoderKL, unscale_latents

SIGMAS = (1.0, 0.9, 0.7, 0.5, 0.3, 0.1)


def held_out_batch(config, data: str, split: str, count: int) -> dict:
  """`count` windows spread evenly over the set's examples, stacked into one batch."""
  m = config.model
  source = ClipWindows(open_clips(data, split), frames=int(m.clip.frames),
                       past=int(m.clip.past), stride=4, speech_config=m.audio)
  examples = [source[int(i)] for i in np.linspace(0, len(source) - 1, count)]
  return {k: jnp.asarray(np.stack([e[k] for e in examples])) for k in examples[0]}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("workdir", help="a MEMO training folder (any stage)")
  parser.add_argument("data", help="a built SynthTalk set the model was not trained on")
  parser.add_argument("--step", type=int, help="a saved step (default: the latest)")
  parser.add_argument("--split", default="train")
  parser.add_argument("--windows", type=int, default=8)
  parser.add_argument("--grid", help="write a PNG: portrait, truth, then x0 at sigma 1, 0.7, 0.3")
  args = parser.parse_args(argv)

  trained = stages.read_params(args.workdir, ema=False, step=args.step)
  task = MemoTask(trained.config)
  memo = task.memo
  params = jax.tree.map(jnp.asarray, trained.params)
  net, vae = params["trainable"], params["frozen"]["vae"]
  batch = held_out_batch(trained.config, args.data, args.split, args.windows)
  b = batch["video"].shape[0]

  x0 = task.latents(vae, batch["video"])
  portrait = task.latents(vae, batch["reference"])
  past = (task.latents(vae, batch["past"]) if batch["past"].shape[1]
          else jnp.zeros((b, 0) + portrait.shape[1:]))
  tokens = memo.image_tokens(net, task.identity(net, batch))
  audio = memo.audio_tokens(net, batch["speech"]) if memo.config.audio else None
  h, w = x0.shape[2:4]

  def inputs(past_latents, *, keep=None, zero_audio=False, memory=True):
    ref_feats, past_feats = memo.condition_from(net["reference_net"], portrait, past_latents,
                                                tokens)
    state = None
    if memo.config.memory_on:
      state = memo.empty_memory(b, h, w)
      if memory:
        state = memo.remember(net["diffusion_net"], state, past_feats)
    heard = None if audio is None else (jnp.zeros_like(audio) if zero_audio else audio)
    return memo.hook_inputs(ref_feats, keep, heard, batch["emotion"], state, portrait)

  variants = {"the model": inputs(past)}
  variants["no reference keys"] = inputs(past, keep=jnp.zeros((b,), bool))
  if memo.config.memory_on:
    variants["empty memory"] = inputs(past, memory=False)
  if audio is not None:
    variants["zero audio"] = inputs(past, zero_audio=True)
  if past.shape[1]:
    variants["past = the portrait"] = inputs(jnp.repeat(portrait[:, None], past.shape[1], 1))

  noise = jax.random.normal(jax.random.PRNGKey(0), x0.shape)
  # the residual output's anchor (model.flow.anchor): the last past frame of each variant
  anchored = memo.config.anchor != "none"
  anchors = {name: (portrait if name == "past = the portrait" else past[:, -1])
             if anchored else None for name in variants}
  denoise = jax.jit(lambda x_t, s, hook, a: memo.denoise(net["diffusion_net"], x_t, s, tokens,
                                                         hook, anchor=a))
  mse = lambda a: float(jnp.mean((a - x0) ** 2))
  print(f"{args.workdir} (step {trained.step}) on {b} windows of {args.data}; "
        f"latent variance {float(jnp.var(x0)):.4f}")
  print(f"copy the portrait: {mse(jnp.broadcast_to(portrait[:, None], x0.shape)):.4f}" +
        (f"   copy the last past frame: {mse(jnp.broadcast_to(past[:, -1:], x0.shape)):.4f}"
         if past.shape[1] else ""))
  print("x0 error at sigma " + " ".join(f"{s:>7}" for s in SIGMAS))
  pictures = []
  for name, hook in variants.items():
    row = []
    for s in SIGMAS:
      sigma = jnp.full((b,), s)
      x_t = objectives.flow_sample(x0, noise, sigma)
      x0_hat = x_t - s * denoise(x_t, sigma, hook, anchors[name])
      row.append(mse(x0_hat))
      if name == "the model" and s in (1.0, 0.7, 0.3):
        pictures.append(x0_hat[:, 0])
    print(f"{name:>20} " + " ".join(f"{v:7.4f}" for v in row))
  # At sigma 1 the input is pure noise and carries nothing of the frame: whatever of the
  # clean frame changes with the draw is noise leaking through, the rest is the model's face.
  ones = jnp.ones((b,))
  draws = jnp.stack([n - denoise(n, ones, variants["the model"], anchors["the model"]) for n in
                     (jax.random.normal(jax.random.PRNGKey(k), x0.shape) for k in range(4))])
  print(f"sigma 1, 4 noise draws: spread across them {float(jnp.mean(jnp.var(draws, 0))):.4f}"
        f", error of their mean {mse(jnp.mean(draws, 0)):.4f}")
  if args.grid:
    from PIL import Image
    decode = lambda z: task.vae.apply({"params": vae}, unscale_latents(task.vae_config, z),
                                      method=AutoencoderKL.decode)
    strip = lambda px: np.concatenate(list(np.asarray(
        jnp.clip(jnp.round((px + 1) * 127.5), 0, 255)).astype(np.uint8)), 1)
    rows = [strip(batch["reference"]), strip(batch["video"][:, 0])]
    rows += [strip(decode(z)) for z in pictures]
    Image.fromarray(np.concatenate(rows, 0)).save(args.grid)
    print(f"wrote {args.grid}: portrait, truth, x0 at sigma 1.0 / 0.7 / 0.3 (one column per window)")


if __name__ == "__main__":
  main()
