"""Shared by the trainer tests: configs, metric reading, checkpoint parameter reading."""

import jax
import numpy as np

from talkjax import config as cfg
from talkjax.models import make_task
from talkjax.train.checkpoint import Checkpointer
from talkjax.train.optimizer import make_optimizer
from talkjax.train.state import abstract_trainable, state_layout
from talkjax import parallel

# Slow enough per step (~0.1-0.2 s on CPU) that a test can act between two checkpoints.
SLOW_MODEL = ["model.embed=128", "model.mlp=512", "model.layers=4", "model.length=64"]


def tiny_config(*overrides):
  # No warm-up, so the very first step already moves the parameters.
  return cfg.load_config("testbed/tiny", ["train.log_every=1", "optimizer.warmup_steps=0", *overrides])


def restore_params(workdir, config, devices, step=None):
  """The parameters of a checkpoint, restored onto a mesh over `devices`."""
  task = make_task(config)
  tx, _ = make_optimizer(config.optimizer, config.train.steps, abstract_trainable(task))
  mesh = parallel.make_mesh(config.mesh, devices)
  _, _, abstract, _ = state_layout(task, tx, mesh, config.axis_rules, config.seed,
                                   ema=config.train.ema_decay > 0)
  ckpt = Checkpointer(workdir / "checkpoints", config.checkpoint)
  step = ckpt.latest_step() if step is None else step
  state, _ = ckpt.restore(step, abstract)
  ckpt.close()
  return jax.tree.map(np.asarray, state.params), step
