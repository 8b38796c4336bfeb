"""INFP stage 2 (audio-guided motion generation) on dyadic SynthTalk at 64 px: a CPU run.

Needs the trained stage 1 in stage1.workdir:

  talkjax train --config experiments/infp/synthtalk_tiny_stage1.py --workdir runs/infp_tiny_stage1
  talkjax train --config experiments/infp/synthtalk_tiny_stage2.py --workdir runs/infp_tiny_stage2
  talkjax sample --checkpoint runs/infp_tiny_stage2 --image face.png --audio me.wav \
      --partner-audio you.wav --out talk.mp4

The first run of stage 2 reads every frame's motion code with the stage-1 motion encoder and
caches them with both tracks under runs/infp_tiny_stage1/motion_codes/.

`:rollout` fine-tunes that trained stage 2 on its own chunks (rollout training: half of
each batch's windows get, as previous motion, the last frames the model itself samples for
the chunk before them; talkjax/models/infp/tasks.py). Tried and not kept for the shipped
model: its chunks joined worse for no clear gain (experiments/infp/README.md).

  talkjax train --config experiments/infp/synthtalk_tiny_stage2.py:rollout \
      --workdir runs/infp_tiny_rollout

"""

from talkjax.errors import ConfigError
from talkjax_experiments.infp._common import stage2_config, tiny_dyadic_synthtalk


def get_config(arg=None):
  if arg not in (None, "", "rollout"):
    raise ConfigError(f"unknown variant {arg!r} of infp/synthtalk_tiny_stage2",
                      fix="use no variant or :rollout")
  c = stage2_config(window=32, previous=8, hidden=128, layers=4, heads=4, slots=32,
                    style_frames=0)
  c.stage1.config = "infp/synthtalk_tiny_stage1"
  c.stage1.workdir = "runs/infp_tiny_stage1"
  # The portrait encoder reads the mood of a portrait caught mid-word (portrait.py; not in
  # the paper): without it a held-out person's open resting mouth was drawn shut.
  c.model.portrait.resolution = 64
  c.data = tiny_dyadic_synthtalk()
  c.data.batch_size = 32
  c.data.stride = 2
  c.train.steps = 10000
  c.train.log_every = 100
  c.checkpoint.every = 1000
  if arg == "rollout":
    c.init_from.workdir = "runs/infp_tiny_stage2"
    c.diffusion.rollout = 0.5
    c.train.steps = 3000
    c.optimizer.lr = 3e-4
  return c
