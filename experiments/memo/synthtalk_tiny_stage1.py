"""MEMO stage 1 (face-domain adaptation) on SynthTalk at 64 px: the tiny DiffusionNet with
reference attention only learns to redraw a frame from the portrait; trained from scratch
(no SD weights exist at this size). Needs the tiny VAE:

  talkjax train --config experiments/memo/synthtalk_tiny_vae.py --workdir runs/memo_tiny_vae
  talkjax train --config experiments/memo/synthtalk_tiny_stage1.py --workdir runs/memo_tiny_stage1
"""

from talkjax_experiments.memo._common import memo_config, stage1
from talkjax_experiments.memo.synthtalk_tiny_stage2 import TINY_UNET, TINY_VAE, tiny


def get_config(arg=None):
  del arg
  c = stage1(tiny(memo_config(unet=TINY_UNET, vae=TINY_VAE, resolution=64)))
  c.data.batch_size = 32
  # shortened so the whole tiny chain trains in about 2.5 h on 2 CPU cores (measured:
  # README.md)
  c.train.steps = 1200
  return c
