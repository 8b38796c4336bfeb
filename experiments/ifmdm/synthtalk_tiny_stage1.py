"""IF-MDM stage 1 (motion autoencoder) on SynthTalk at 64 px: minutes on a CPU.

Builds its SynthTalk set on first use, then trains:

  talkjax train --config experiments/ifmdm/synthtalk_tiny_stage1.py --workdir runs/ifmdm_tiny_stage1
"""

from talkjax.defaults import base_config
from talkjax_experiments.ifmdm._common import tiny_synthtalk


def get_config(arg=None):
  del arg
  c = base_config()
  c.family = "ifmdm_stage1"
  c.model.resolution = 64
  c.model.renderer = "fast"      # the light renderer; "paper" trains the paper's at 64 px
  c.model.channels = (16, 32, 64, 64)
  c.model.disc_channels = (16, 32, 64, 64)
  c.model.refine_channels = 0   # paper renderer only; 0: the widest scale's (64 here)
  c.model.latent = 64
  c.model.directions = 20
  # The GAN term (and its R1 penalty's double backward) costs ~40% of a CPU step at 64 px;
  # the CPU budget goes to more steps instead. Paper-size configs turn it on.
  c.loss = dict(l1=1.0, motion_weight=20.0, perceptual=0.0, gan=0.0, r1=1.0)
  data = tiny_synthtalk()
  data.near_pairs = 0.5   # share of (frame t-3, frame t) pairs: see ifmdm.FramePairs
  data.near_gap = 3
  data.batch_size = 8
  data.num_examples = 0
  data.eval_examples = 0
  data.worker_count = 0
  data.shuffle = True
  c.data = data
  c.train.steps = 12000
  c.train.log_every = 50
  # 8000 steps at a constant 1e-3 reconstructed held-out head motion at 0.79 of ground
  # truth's; 12000 with a cosine decay to 5 % does better (experiments/ifmdm/README.md).
  c.optimizer.lr = 1e-3
  c.optimizer.warmup_steps = 50
  c.optimizer.schedule = "cosine"
  c.optimizer.min_lr_ratio = 0.05
  c.checkpoint.every = 1000
  return c
