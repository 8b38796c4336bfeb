"""Sampling with parameters sharded over 8 fake CPU devices equals the replicated result."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from talkjax.errors import TalkjaxError
from talkjax.models import load_generator, shipped_demo_model
from talkjax.pipelines.sampler import Sampler
from talkjax_datasets.synthtalk.clip import make_clip
from talkjax_datasets.synthtalk.spec import BuildSpec


def test_fsdp_sharded_ifmdm_equals_replicated():
  hook, params = load_generator(shipped_demo_model())
  sharded = Sampler(hook, params, mesh={"data": 1, "fsdp": 8})
  single = Sampler(hook, params, devices=jax.devices()[:1])
  assert sharded.mesh.shape["fsdp"] == 8 and sharded.batch_ways == 8
  # The shipped DiT has hidden size 128: FSDP splits it 8 ways, 16 rows per device.
  kernel = sharded.params["dit"]["blocks_0"]["mlp_in"]["kernel"]        # (128, 512)
  assert kernel.sharding.spec == P("fsdp", "tensor")
  assert {s.data.shape for s in kernel.addressable_shards} == {(16, 512)}
  conv = sharded.params["renderer"]["encoder"]["down_3"]["conv1"]["kernel"]  # (3, 3, 64, 64)
  assert {s.data.shape for s in conv.addressable_shards} == {(3, 3, 64, 8)}
  stats = sharded.params["motion_stats"]["std"]                         # replicated
  assert {s.data.shape for s in stats.addressable_shards} == {(20,)}
  one = single.params["dit"]["blocks_0"]["mlp_in"]["kernel"]
  assert {s.data.shape for s in one.addressable_shards} == {(128, 512)}

  clips = [make_clip(BuildSpec(identities=4, clips=4, seconds=1.5, resolution=64, seed=40 + i), 0)
           for i in range(3)]
  images = np.stack([c["frames"][0] for c in clips])
  audio = np.stack([c["audio"] for c in clips])
  b = single.generate(images, audio, seed=[1, 2, 3])
  # FSDP alone, and FSDP with tensor parallelism (the mix an XLA partitioner bug once broke).
  for sampler in (sharded, Sampler(hook, params, mesh={"data": 1, "fsdp": 4, "tensor": 2})):
    a = sampler.generate(images, audio, seed=[1, 2, 3])
    np.testing.assert_allclose(a["motion"], b["motion"], atol=1e-4)
    diff = np.abs(a["frames"].astype(int) - b["frames"].astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.01, (dict(sampler.mesh.shape), diff.max(), diff.mean())


def test_a_mesh_the_model_does_not_divide_is_a_clear_error():
  hook, params = load_generator(shipped_demo_model())
  with pytest.raises(TalkjaxError, match="cannot be split 8 ways over mesh axes .'tensor',."):
    Sampler(hook, params, mesh={"data": 1, "tensor": 8})   # 4 attention heads
