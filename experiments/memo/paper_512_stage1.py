"""MEMO stage 1 at the paper's size: face-domain adaptation. The ReferenceNet and the
DiffusionNet's spatial layers start from Stable Diffusion 1.5 and learn to redraw a frame
of a talking clip from its portrait (reference attention, image tokens); no audio, no
memory. 512 px, AdamW 1e-5, bf16, rematerialisation.

  talkjax convert diffusers --src stable-diffusion-v1-5 --out weights/sd15
  talkjax train --config experiments/memo/paper_512_stage1.py --workdir runs/memo_stage1 \\
      --set model.weights.unet=weights/sd15/unet model.weights.vae=weights/sd15/vae
"""

from talkjax_experiments.memo._common import SD15_UNET, SD_VAE, memo_config, paper_data, stage1


def get_config(arg=None):
  del arg
  c = stage1(memo_config(unet=SD15_UNET, vae=SD_VAE, resolution=512))
  c.compute_dtype = "bfloat16"
  c.model.remat = True
  c.data = paper_data(batch_size=64)
  c.train.steps = 30_000
  c.checkpoint.every = 5000
  return c
