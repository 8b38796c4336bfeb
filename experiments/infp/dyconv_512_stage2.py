"""INFP stage 2 at the paper's scale on DyConv: wav2vec2 features of both tracks, the
guider's two banks, an 8-block denoiser, motion style from a 2 s reference stretch.

  talkjax convert wav2vec2 --src facebook-wav2vec2-base-960h --out weights/wav2vec2-base
  talkjax train --config experiments/infp/dyconv_512_stage2.py --workdir runs/infp_dyconv_stage2 \
      --set model.audio.wav2vec2=weights/wav2vec2-base
  talkjax bench sample --config infp/dyconv_512_stage2 --resolution 512 --stream

Sizes are not published by the paper: 512 hidden, 8 blocks, 8 heads, banks of 64 entries,
64-frame chunks with 16 frames of previous motion are this config's choice.
"""

from talkjax_experiments.infp._common import stage2_config
from talkjax_experiments.infp.dyconv_512_stage1 import dyconv_data


def get_config(arg=None):
  del arg
  c = stage2_config(window=64, previous=16, hidden=512, layers=8, heads=8, slots=64,
                    style_frames=50)
  c.compute_dtype = "bfloat16"
  c.stage1.config = "infp/dyconv_512_stage1"
  c.stage1.workdir = "runs/infp_dyconv_stage1"
  c.model.audio.kind = "wav2vec2"
  c.model.audio.wav2vec2 = ""     # the converted folder, set on the command line (above)
  c.model.audio.layer = -1
  c.model.audio.level = False     # a log-mel frame's loudness (log-mel features only)
  c.data = dyconv_data(64)
  c.optimizer.lr = 1e-4
  c.train.ema_decay = 0.9999
  c.train.steps = 200_000
  c.train.log_every = 100
  c.mesh.data = -1
  c.checkpoint.every = 5000
  return c
