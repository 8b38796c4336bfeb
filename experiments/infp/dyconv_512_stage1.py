"""INFP stage 1 at 512 px on DyConv (TPU/GPU scale).

Reads a DyConv build (`talkjax data build dyconv --raw ~/DyConv --out data/dyconv
--resolution 512`, datasets/dyconv/README.md). The renderer is the shared warping renderer at
IF-MDM's 512 px light-renderer widths; the motion encoder reads the masked face. The paper
publishes neither its encoders' sizes nor its loss weights: these are IF-MDM's (L1 +
LPIPS + non-saturating GAN with R1), a labelled choice, not the paper's.

  talkjax train --config experiments/infp/dyconv_512_stage1.py --workdir runs/infp_dyconv_stage1
"""

from talkjax_experiments._real import real_data
from talkjax_experiments.infp._common import stage1_config


def dyconv_data(batch_size: int):
  d = real_data("dyconv", "data/dyconv", batch_size=batch_size)
  d.near_pairs = 0.0
  d.near_gap = 3
  return d


def get_config(arg=None):
  del arg
  c = stage1_config(resolution=512, channels=(32, 64, 128, 256, 512, 512), latent=512)
  c.compute_dtype = "bfloat16"
  c.loss = dict(l1=1.0, motion_weight=0.0, perceptual=1.0, gan=0.1, r1=10.0)
  c.data = dyconv_data(32)
  c.train.steps = 300_000
  c.train.log_every = 100
  c.optimizer.lr = 2e-4
  c.optimizer.b1 = 0.5
  c.optimizer.b2 = 0.99
  c.optimizer.warmup_steps = 1000
  c.mesh.data = -1
  c.checkpoint.every = 5000
  return c
