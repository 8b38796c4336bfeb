"""INFP stage 1 (motion-based head imitation) on dyadic SynthTalk at 64 px: a CPU run.

Builds its dyadic SynthTalk set on first use, then trains:

  talkjax train --config experiments/infp/synthtalk_tiny_stage1.py --workdir runs/infp_tiny_stage1

The recipe is the tiny IF-MDM renderer's (experiments/ifmdm/README.md explains it): no GAN
or LPIPS on a CPU budget, lr 1e-3 with a cosine decay, half the pairs 3 frames apart,
pixels that move weighed 20x.
"""

from talkjax_experiments.infp._common import stage1_config, tiny_dyadic_synthtalk


def get_config(arg=None):
  del arg
  c = stage1_config(resolution=64, channels=(16, 32, 64, 64), latent=64)
  c.loss = dict(l1=1.0, motion_weight=20.0, perceptual=0.0, gan=0.0, r1=1.0)
  c.data = tiny_dyadic_synthtalk()
  c.data.near_pairs = 0.5
  c.data.near_gap = 3
  # At 10000 steps the redrawn frames lost the gaze (pupils stayed where the portrait's
  # were), blinks and slight mouth openings, and the probe read the speaking state right on
  # only 0.883 of 20 held-out conversations' frames; at 20000, 0.906 (experiments/infp/README.md).
  c.train.steps = 20000
  c.train.log_every = 100
  c.optimizer.lr = 1e-3
  c.optimizer.warmup_steps = 50
  c.optimizer.schedule = "cosine"
  c.optimizer.min_lr_ratio = 0.05
  c.checkpoint.every = 1000
  return c
