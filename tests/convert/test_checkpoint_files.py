"""Reading PyTorch .bin archives without running pickled code."""

import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from talkjax.convert.checkpoint_files import read_checkpoint_folder, read_torch_bin
from talkjax.errors import TalkjaxError


def test_reads_dtypes_views_and_scalars(tmp_path):
  base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
  state = {
      "f32": base,
      "transposed_view": base.t(),          # non-contiguous strides
      "sliced_view": base[1:, 2:5],         # storage offset
      "f16": base.half(),
      "bf16": (base / 7).bfloat16(),
      "i64": torch.tensor([1, -2, 3]),
      "scalar": torch.tensor(2.5),
      "param": torch.nn.Parameter(torch.ones(2, 2)),
  }
  torch.save(state, tmp_path / "m.bin")
  got = read_torch_bin(tmp_path / "m.bin")
  assert set(got) == set(state)
  for k, v in state.items():
    np.testing.assert_array_equal(got[k], v.detach().float().numpy() if k == "bf16"
                                  else v.detach().numpy())


class _Evil:
  def __reduce__(self):
    return (os.system, ("touch pwned",))


def test_refuses_pickled_code(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  path = tmp_path / "evil.bin"
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", pickle.dumps({"w": _Evil()}, protocol=2))
  with pytest.raises(TalkjaxError, match="posix.system|os.system|nt.system"):
    read_torch_bin(path)
  assert not (tmp_path / "pwned").exists()


def test_non_zip_and_missing_files(tmp_path):
  bad = tmp_path / "legacy.bin"
  bad.write_bytes(pickle.dumps({"a": 1}))
  with pytest.raises(TalkjaxError, match="not a zip"):
    read_torch_bin(bad)
  (tmp_path / "empty").mkdir()
  with pytest.raises(TalkjaxError, match="no model.safetensors"):
    read_checkpoint_folder(tmp_path / "empty")
  with pytest.raises(TalkjaxError, match="not found"):
    read_checkpoint_folder(tmp_path / "nope")
