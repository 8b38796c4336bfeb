"""The tiny MEMO's image autoencoder: an SD-layout AutoencoderKL (3 resolutions, f = 4,
4 latent channels) trained from scratch on SynthTalk frames at 64 px (no pretrained VAE
exists at this size). Stage 0 of experiments/memo/synthtalk_tiny_stage2.py:

  talkjax train --config experiments/memo/synthtalk_tiny_vae.py --workdir runs/memo_tiny_vae

`:decoder` fine-tunes that VAE's decoder alone on latents with noise of a diffusion model's
size (loss.latent_noise; the encoder frozen, so the latents, and any model trained on them,
stay the same). A MEMO chain may name it as model.weights.vae; tried on the tiny chain and
not kept in its recipe (experiments/memo/README.md: cleaner frames, no better marks):

  talkjax train --config experiments/memo/synthtalk_tiny_vae.py:decoder \
      --workdir runs/memo_tiny_decoder --set init_from.workdir=runs/memo_tiny_vae
"""

import ml_collections

from talkjax_experiments.memo._common import tiny_synthtalk
from talkjax_experiments.memo.synthtalk_tiny_stage2 import TINY_VAE


def get_config(arg=None):
  from talkjax.defaults import base_config
  c = base_config()
  c.family = "vae"
  c.model.resolution = 64
  c.model.vae = ml_collections.ConfigDict(TINY_VAE)
  # L1 + a small KL; LPIPS (loss.perceptual) doubles the step time on a CPU.
  c.loss = ml_collections.ConfigDict(dict(kl=1e-4, perceptual=0.0, latent_noise=0.0))
  c.data.update(tiny_synthtalk())
  c.data.batch_size = 8
  c.data.num_examples = 0
  c.data.eval_examples = 0
  c.optimizer.lr = 1e-3
  c.optimizer.warmup_steps = 100
  # shortened (from 4000) with the other tiny stages to fit a 2-core session; a held-out
  # clip still reconstructs at identity cosine 0.97-0.98 (README.md)
  c.train.steps = 2500
  c.train.log_every = 100
  c.checkpoint.every = 1000
  if arg == "decoder":
    # Deviation, labelled (MEMO decodes with SD's VAE as it is): the decoder learns to
    # decode latents off by as much as the tiny MEMO's are (experiments/memo/README.md:
    # its samples' colour speckles are its decoder's reading of a ~0.26-std latent error).
    c.init_from.workdir = "runs/memo_tiny_vae"
    c.optimizer.freeze = (r"^trainable/vae/(encoder|quant_conv)/",)
    c.loss.latent_noise = 0.3
    c.optimizer.lr = 3e-4
    c.train.steps = 1000
  elif arg is not None:
    from talkjax.errors import ConfigError
    raise ConfigError(f"unknown synthtalk_tiny_vae variant {arg!r}", fix="use CONFIG or CONFIG:decoder")
  return c
