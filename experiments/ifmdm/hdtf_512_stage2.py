"""IF-MDM stage 2 at the paper's size ("A0": 6 layers, 512 hidden, 8 heads; 64-frame windows;
wav2vec2 features, 768-d at 50 Hz) on HDTF motion codes from hdtf_512_stage1.

  talkjax convert wav2vec2 --src facebook-wav2vec2-base-960h --out weights/wav2vec2-base
  talkjax train --config experiments/ifmdm/hdtf_512_stage2.py --workdir runs/ifmdm_hdtf_stage2 \\
      --set model.audio.wav2vec2=weights/wav2vec2-base
"""

from talkjax_experiments.ifmdm._common import hdtf_data, stage2_config


def get_config(arg=None):
  del arg
  c = stage2_config(window=64, hidden=512, layers=6, heads=8)
  c.stage1.config = "ifmdm/hdtf_512_stage1"
  c.stage1.workdir = "runs/ifmdm_hdtf_stage1"
  c.model.audio.kind = "wav2vec2"
  c.data = hdtf_data("data/hdtf")
  c.data.batch_size = 128
  c.data.stride = 4
  c.train.steps = 200_000
  c.optimizer.warmup_steps = 1000
  c.checkpoint.every = 5000
  return c
