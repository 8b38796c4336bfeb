"""Reading checkpoint tensors as numpy: safetensors, and PyTorch `.bin` without pickle code.

A PyTorch `.bin` is a zip archive: `<root>/data.pkl` describes the state dict and
`<root>/data/<key>` hold the raw storages. Unpickling it with `pickle` or `torch.load` would
run whatever callables the pickle names; here a restricted unpickler resolves only an
allow-list of names (the tensor-rebuild functions, storage types, OrderedDict) to local
stand-ins that build numpy arrays from the archive's bytes. Anything else is refused.
Legacy (pre-zip, torch < 1.6) files are refused with a fix.
"""

from __future__ import annotations

import collections
import os
import pickle
import zipfile

import numpy as np

from talkjax.errors import TalkjaxError

# torch storage type name -> numpy dtype (bfloat16 is widened to float32 when read)
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
  def __init__(self, name):
    self.name = name


def _rebuild_tensor_v2(storage, offset, size, stride, *unused):
  size, stride = tuple(size), tuple(stride)
  if not size:
    return storage[offset].copy()
  itemsize = storage.dtype.itemsize
  return np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                         strides=tuple(s * itemsize for s in stride)).copy()


def _rebuild_parameter(data, requires_grad, backward_hooks, *unused):
  return data


def _ordered_dict(*args):
  return collections.OrderedDict(*args)


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): _ordered_dict,
}


class _RestrictedUnpickler(pickle.Unpickler):
  def __init__(self, file, archive: zipfile.ZipFile, root: str, path: str):
    super().__init__(file)
    self._archive, self._root, self._path = archive, root, path
    self._storages = {}

  def find_class(self, module, name):
    if (module, name) in _ALLOWED:
      return _ALLOWED[(module, name)]
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(name)
    raise TalkjaxError(f"the checkpoint's pickle refers to {module}.{name}, which is not a "
                       "tensor; refusing to run it", path=self._path,
                       fix="convert the checkpoint to safetensors with the tool that made it")

  def persistent_load(self, pid):
    kind, storage_type, key, _location, numel = pid[:5]
    if kind != "storage" or not isinstance(storage_type, _StorageType):
      raise TalkjaxError(f"unexpected persistent id {pid[:2]!r} in the checkpoint",
                         path=self._path, fix="re-save the checkpoint with torch.save")
    if key not in self._storages:
      raw = self._archive.read(f"{self._root}/data/{key}")
      dtype = _STORAGE_DTYPES[storage_type.name]
      if dtype == "bfloat16":
        bits = np.frombuffer(raw, np.uint16).astype(np.uint32) << 16
        arr = bits.view(np.float32)
      else:
        arr = np.frombuffer(raw, dtype)
      self._storages[key] = arr[:numel] if numel else arr
    return self._storages[key]


def read_torch_object(path: os.PathLike | str):
  """What a zip-format torch file holds (dicts, lists, numbers, strings), its tensors as
  numpy arrays; any other pickled object is refused."""
  path = os.fspath(path)
  if not zipfile.is_zipfile(path):
    raise TalkjaxError("not a zip-format PyTorch checkpoint (legacy torch<1.6 files are not read)",
                       path=path, fix="re-save it with a recent torch, or as safetensors")
  with zipfile.ZipFile(path) as archive:
    pkls = [n for n in archive.namelist() if n.endswith("/data.pkl")]
    if len(pkls) != 1:
      raise TalkjaxError("the archive holds no single data.pkl", path=path,
                         fix="pass the .bin written by torch.save / save_pretrained")
    root = pkls[0][:-len("/data.pkl")]
    byteorder = f"{root}/byteorder"
    if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
      raise TalkjaxError("big-endian checkpoints are not supported", path=path,
                         fix="re-save the checkpoint on a little-endian machine")
    with archive.open(pkls[0]) as f:
      return _RestrictedUnpickler(f, archive, root, path).load()


def read_torch_bin(path: os.PathLike | str) -> dict[str, np.ndarray]:
  state = read_torch_object(path)
  if not isinstance(state, dict):
    raise TalkjaxError("the checkpoint is not a state dict", path=os.fspath(path),
                       fix="save `model.state_dict()`, not the model object")
  return {k: np.asarray(v) for k, v in state.items()}


def read_safetensors(path: os.PathLike | str) -> dict[str, np.ndarray]:
  from safetensors.numpy import load_file
  path = os.fspath(path)
  try:
    return load_file(path)
  except Exception as e:  # safetensors raises its own error types for bad headers
    raise TalkjaxError(f"cannot read safetensors file ({e})", path=path,
                       fix="re-download or re-save the weights") from e


def read_checkpoint_folder(folder: os.PathLike | str) -> dict[str, np.ndarray]:
  """All tensors of a Hugging Face model folder: safetensors first, then PyTorch .bin.

  Sharded checkpoints (`*.index.json`) are read shard by shard.
  """
  folder = os.fspath(folder)
  if not os.path.isdir(folder):
    raise TalkjaxError("weights folder not found", path=folder, fix="check --src")
  names = sorted(os.listdir(folder))
  for ext, reader in ((".safetensors", read_safetensors), (".bin", read_torch_bin)):
    files = [n for n in names if n.endswith(ext) and not n.startswith("training_args")]
    if files:
      tensors = {}
      for name in files:
        tensors.update(reader(os.path.join(folder, name)))
      return tensors
  raise TalkjaxError("no model.safetensors or pytorch_model.bin in the folder", path=folder,
                     fix="point --src at a Hugging Face model folder")
