"""The tiny MEMO the MEMO tests share (test_memo.py: layout and training; test_memo_sampling.py:
the sampler): its config on a 3-person SynthTalk, the task, random parameters and a batch,
each made once per test module, and a speech-like test signal. Test modules import the
fixtures by name (`from memo_tiny import config, ...`)."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import pytest

from talkjax import config as cfg
from talkjax.models import make_task

TINY = ["data.synthtalk.identities=3", "data.synthtalk.clips=4", "data.synthtalk.seconds=1.6",
        "model.clip.frames=4", "model.clip.past=4", "data.batch_size=2", "sample.steps=2",
        "model.emotion.classifier="]
F = 4


@pytest.fixture(scope="module")
def config(tmp_path_factory):
  data = tmp_path_factory.mktemp("memo") / "synthtalk"
  return cfg.load_config("memo/synthtalk_tiny_stage2", [f"data.path={data}", *TINY])


@pytest.fixture(scope="module")
def task(config):
  return make_task(config)


@pytest.fixture(scope="module")
def params(task):
  """Initialised once for the module. The key is an RBG one: with threefry's per-parameter
  hashing XLA compiled the tiny MEMO's init for 92 s, with RBG bits for 37 s (both beside a
  training job; the values are as random, and nothing here needs the trainer's draw)."""
  key = jax.random.key(0, impl="unsafe_rbg")
  return nn.meta.unbox(jax.jit(task.init)(key, task.example_batch(1)))


@pytest.fixture(scope="module")
def batch(task):
  source = task.data_source("train")
  return {k: np.stack([source[i][k] for i in range(2)]) for k in source[0]}


def speech(seed, n):
  """n samples of 16 kHz speech-like sound: a tone switched on and off, and a little noise."""
  rng = np.random.default_rng(seed)
  t = np.arange(n) / 16000
  return (0.3 * np.sin(2 * np.pi * (150 + 50 * rng.random()) * t)
          * (rng.random(n // 640 + 1).repeat(640)[:n] > 0.4) + 0.02 * rng.standard_normal(n)
          ).astype(np.float32)
