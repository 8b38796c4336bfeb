"""Behaviour of the trained IF-MDM that ships with talkjax (talkjax/assets/): the
controllability knobs and seamless chunk chaining, measured on people it never saw."""

import jax
import numpy as np
import pytest

from talkjax.models import shipped_demo_model
from talkjax.pipelines.sampler import Sampler
from talkjax_datasets.synthtalk.clip import make_clip
from talkjax_datasets.synthtalk.spec import BuildSpec


@pytest.fixture(scope="module")
def gen():
  return Sampler.load(shipped_demo_model())


@pytest.fixture(scope="module")
def people():
  clips = [make_clip(BuildSpec(identities=4, clips=4, seconds=5.12, resolution=64, seed=31), i)
           for i in range(3)]
  return np.stack([c["frames"][0] for c in clips]), np.stack([c["audio"] for c in clips])


def test_std_scale_raises_and_lowers_the_motion_spread(gen, people):
  images, audio = people
  scales = (0.5, 1.0, 2.0)
  # One batch, each person at every intensity: std_scale is a per-example runtime input.
  knobs = [gen.knobs(std="scale", std_scale=s) for s in scales for _ in images]
  motion = gen.generate(np.tile(images, (3, 1, 1, 1)), np.tile(audio, (3, 1)), seed=1,
                        knobs=knobs)["motion"]
  spread = motion.std(axis=1).mean(-1).reshape(3, len(images)).mean(1)
  assert spread[0] < spread[1] < spread[2], dict(zip(scales, spread))


def test_mean_knob_keeps_the_posture_of_the_image(gen, people):
  images, audio = people
  _, _, alpha, _ = jax.jit(gen.hook.appearance)(gen.params, images)
  offset = {}
  for mode in ("image", "previous"):
    motion = gen.generate(images, audio, seed=2, knobs=gen.knobs(mean=mode, std="scale"))["motion"]
    offset[mode] = float(np.abs(motion[:, -gen.window:].mean(1) - np.asarray(alpha)).mean())
  assert offset["image"] <= offset["previous"] + 1e-3, offset


def test_chunks_join_without_a_seam(gen, people):
  images, audio = people
  motion = gen.generate(images, audio, seed=3)["motion"]
  steps = np.linalg.norm(np.diff(motion, axis=1), axis=-1)        # (B, T-1) frame to frame
  w = gen.window
  at_seams = steps[:, w - 1::w]                                    # last of chunk k -> first of k+1
  inside = np.delete(steps, np.arange(w - 1, steps.shape[1], w), axis=1)
  assert at_seams.size >= 9
  assert np.median(at_seams) < 2.0 * np.median(inside), (np.median(at_seams), np.median(inside))
  assert at_seams.max() < np.percentile(inside, 99.5) * 1.5


def test_a_model_file_of_the_first_layout_gives_the_same_frames(gen, people, tmp_path):
  """Files written before the generation layer (renderer and DiT as top-level keys, motion
  statistics inside the config) load through the family's reader."""
  import json
  import flax.serialization
  from talkjax import bundle
  current = bundle.read(shipped_demo_model())
  config = current.config.to_dict()
  config["model"]["stats"] = {k: [float(x) for x in v] for k, v in current.params["motion_stats"].items()}
  f16 = lambda t: jax.tree.map(lambda x: np.asarray(x, np.float16), t)
  legacy = {"config": json.dumps(config), "stage1_config": current.linked["stage1"].to_json(),
            "renderer": f16(current.params["renderer"]), "dit": f16(current.params["dit"])}
  (tmp_path / "old.msgpack").write_bytes(flax.serialization.msgpack_serialize(legacy))
  images, audio = people
  old = Sampler.load(tmp_path / "old.msgpack").generate(images[:1], audio[:1, :16000], seed=4)
  new = gen.generate(images[:1], audio[:1, :16000], seed=4)
  np.testing.assert_array_equal(old["frames"], new["frames"])
