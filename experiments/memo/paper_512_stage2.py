"""MEMO stage 2 at the paper's size: 512 px, SD 1.5 ReferenceNet and DiffusionNet with the
audio and memory modules, 16-frame clips with 16 past frames, rectified flow (logit-normal
sigma, velocity prediction), robust loss masking at 0.1, condition dropout 5 %, emotion
label dropout 0.3, AdamW 1e-5 (weight decay 0.01, the release's fine-tuning), gradient
clipping 1.0, bf16 compute with per-block rematerialisation.

  talkjax train --config experiments/memo/paper_512_stage2.py --dry-run
  talkjax train --config experiments/memo/paper_512_stage2.py:warmup --workdir runs/memo_warmup
  talkjax train --config experiments/memo/paper_512_stage2.py --workdir runs/memo_stage2

The warm-up starts from stage 1 (paper_512_stage1.py) and trains the audio and memory
modules with stage 1's frozen; joint training then starts from the warm-up.

Departures, labelled: sigma is continuous, not quantised to 1000 levels; condition dropout
is drawn per example, not once per batch.
"""

from talkjax_experiments.memo._common import SD15_UNET, SD_VAE, memo_config, paper_data, stage2


def get_config(arg=None):
  c = stage2(memo_config(unet=SD15_UNET, vae=SD_VAE, resolution=512), arg,
             stage1_workdir="runs/memo_stage1", warmup_workdir="runs/memo_warmup",
             warmup_steps=5000)
  c.compute_dtype = "bfloat16"
  c.model.remat = True
  c.data = paper_data(batch_size=8)
  c.train.steps = 20_000
  c.checkpoint.every = 5000
  # Cloud TPU layouts (talkjax launch tpu): the 2.5 B parameters FSDP-sharded, tensor
  # parallelism inside a host where the batch of 8 has fewer examples than devices. The
  # 256-chip slices raise the global batch (128 / 256: one clip per device), a departure
  # from the paper's recipe, labelled here.
  c.launch.presets = {
      "v4-8": {"data": 1, "fsdp": 4, "tensor": 1},
      "v5p-8": {"data": 1, "fsdp": 4, "tensor": 1},
      "v5p-64": {"data": 1, "fsdp": 8, "tensor": 4},
      "v5p-256": {"data": 4, "fsdp": 32, "tensor": 1, "batch_size": 128},
      "v6e-8": {"data": 1, "fsdp": 8, "tensor": 1},
      "v6e-256": {"data": 8, "fsdp": 32, "tensor": 1, "batch_size": 256},
  }
  return c
