"""Model files stored with int8 weight matrices: each matrix comes back within half a
quantisation step of every output channel's scale, small and full-precision leaves exactly
as float16 / float32 files keep them, and the file is far smaller."""

import types

import ml_collections
import numpy as np

from talkjax import bundle


def _hook():
  config = ml_collections.ConfigDict({"family": "testbed_talker"})
  return types.SimpleNamespace(config=config, linked={}, full_precision=(r"^stats/",))


def test_int8_files_restore_each_channel_within_half_a_step(tmp_path):
  rng = np.random.default_rng(0)
  params = {"net": {"kernel": rng.standard_normal((64, 96)) * np.linspace(0.01, 3, 96),
                    "bias": rng.standard_normal(96)},
            "stats": {"big": rng.standard_normal((80, 80))}}
  weights = {"net": params["net"]}
  assert (bundle.save(tmp_path / "w8.msgpack", _hook(), weights, int8=True)
          < 0.6 * bundle.save(tmp_path / "w16.msgpack", _hook(), weights))
  bundle.save(tmp_path / "f16.msgpack", _hook(), params)
  bundle.save(tmp_path / "i8.msgpack", _hook(), params, int8=True)
  got = bundle.read(tmp_path / "i8.msgpack").params
  kernel = np.asarray(params["net"]["kernel"], np.float64)
  step = np.abs(kernel).max(0) / 127                       # per output channel
  assert np.all(np.abs(got["net"]["kernel"] - kernel) <= step / 2 + 1e-6)
  assert np.abs(got["net"]["kernel"] - kernel).max() > 0     # it was quantised
  np.testing.assert_array_equal(got["net"]["bias"], params["net"]["bias"].astype(np.float16))
  np.testing.assert_array_equal(got["stats"]["big"], params["stats"]["big"].astype(np.float32))
  assert bundle.read(tmp_path / "f16.msgpack").raw["format"] == "talkjax.model/1"
  assert bundle.read(tmp_path / "i8.msgpack").raw["format"] == "talkjax.model/2"
