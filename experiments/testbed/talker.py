"""Test-bed talker: a tiny generator that takes partner audio and an emotion (32 px).

Exercises the generation layer with a second family; trains in seconds on a CPU:

  talkjax train --config experiments/testbed/talker.py --workdir /tmp/talkjax-talker
  talkjax sample --checkpoint /tmp/talkjax-talker --image face.png --audio me.wav \
      --partner-audio you.wav --emotion happy --out talker.mp4
"""

import ml_collections

from talkjax.defaults import base_config


def get_config(arg=None):
  del arg
  c = base_config()
  c.family = "testbed_talker"
  c.model.hidden = 16
  c.model.window = 8           # frames per chunk
  c.model.resolution = 32
  c.data.batch_size = 8
  c.data.num_examples = 64
  c.data.eval_examples = 16
  c.train.steps = 20
  c.optimizer.lr = 3e-3
  c.checkpoint.every = 10
  c.sample = ml_collections.ConfigDict(dict(noise_scale=0.5, amplitude=60.0))
  return c
