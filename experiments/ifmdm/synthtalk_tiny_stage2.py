"""IF-MDM stage 2 (audio-to-motion DiT) on SynthTalk at 64 px: minutes on a CPU.

Needs the trained stage 1 (experiments/ifmdm/synthtalk_tiny_stage1.py) in stage1.workdir:

  talkjax train --config experiments/ifmdm/synthtalk_tiny_stage1.py --workdir runs/ifmdm_tiny_stage1
  talkjax train --config experiments/ifmdm/synthtalk_tiny_stage2.py --workdir runs/ifmdm_tiny_stage2

The first run of stage 2 reads every frame's motion code with the stage-1 encoder and
caches them under runs/ifmdm_tiny_stage1/motion_codes/.
"""

from talkjax_experiments.ifmdm._common import stage2_config, tiny_synthtalk_speech


def get_config(arg=None):
  del arg
  c = stage2_config(window=32, hidden=128, layers=4, heads=4)
  c.stage1.config = "ifmdm/synthtalk_tiny_stage1"
  c.stage1.workdir = "runs/ifmdm_tiny_stage1"
  c.model.audio.n_mels = 40
  c.data = tiny_synthtalk_speech()
  c.data.batch_size = 32
  c.data.stride = 2
  c.data.num_examples = 0
  c.data.eval_examples = 0
  c.data.worker_count = 0
  c.data.shuffle = True
  c.loss.velocity = 1.0
  # Sampling with the mean and std tokens dropped, as the paper's main results: the mean
  # pinned to the portrait's motion ("image") holds the mouth near the portrait's (mostly
  # closed) pose (held-out mean opening 0.44 of ground truth's against 0.87 dropped), and
  # the std token at the data's median window std damps head motion (0.68 against 0.76).
  c.sample.mean = "none"
  c.sample.std = "none"
  # 25 DDIM steps, not 10: held-out head motion 0.86 of ground truth's against 0.76 (the
  # DiT is a small part of a frame's cost). Lookahead 4: each chunk keeps the first 28 of
  # the DiT's 32 frames, so none is sampled without the speech its lips anticipate
  # (held-out lip-sync 0.941 of ground truth's against 0.930; experiments/ifmdm/README.md).
  c.sample.steps = 25
  c.sample.lookahead = 4
  c.train.steps = 12000
  c.train.log_every = 100
  c.train.ema_decay = 0.999
  c.optimizer.lr = 1e-3
  c.optimizer.warmup_steps = 100
  c.checkpoint.every = 2000
  return c
