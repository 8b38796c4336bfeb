"""Test-bed transformer on synthetic regression data: exercises the trainer and sharding.

Runs in seconds on a CPU:

  talkjax train --config experiments/testbed/tiny.py --workdir /tmp/talkjax-testbed
"""

from talkjax.defaults import base_config


def get_config(arg=None):
  del arg
  c = base_config()
  c.family = "testbed"
  c.model.features = 8
  c.model.out_features = 8
  c.model.length = 16
  c.model.embed = 32
  c.model.heads = 4
  c.model.head_dim = 8
  c.model.mlp = 64
  c.model.layers = 2
  c.data.batch_size = 16
  c.train.steps = 40
  c.optimizer.lr = 3e-3
  c.optimizer.warmup_steps = 5
  c.checkpoint.every = 20
  return c
