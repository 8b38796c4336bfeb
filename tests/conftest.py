"""Test-wide setup: 8 fake CPU devices so sharding is tested without accelerators."""

import os

# Must happen before JAX initialises its backends (i.e. before any test imports jax).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# One persistent XLA cache for the whole run, in a fresh folder removed at the end (tests
# stay hermetic: nothing read from or left in ~/.cache; test_cli checks the cache itself).
# Many tests compile the same tiny models' programs, in both pytest workers and in the
# commands they start; all but the first compile of each is a disk read.
_CREATED_CACHE = None
if "TALKJAX_COMPILATION_CACHE" not in os.environ:
  import tempfile
  _CREATED_CACHE = tempfile.mkdtemp(prefix="talkjax-test-xla-")
  os.environ["TALKJAX_COMPILATION_CACHE"] = _CREATED_CACHE   # inherited by the workers
# Two pytest workers share the 2 cores: one BLAS thread each (a 2048-d Frechet distance ran
# ~5x slower with OpenBLAS threads spinning against the other worker).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _importable_torchvision():
  """PyPI's Linux torchvision (pulled in by the reference packages pytorch-fid, lpips and
  syncnet-python) is a CUDA build whose C extension cannot load beside the CPU torch; its
  import then stops registering fake kernels for two detection ops, nms and qnms, and
  transformers' Wav2Vec2 import fails with it. No reference the tests run uses those ops, so
  their schemas are declared (only when that failure happens) and torchvision imports."""
  import importlib.util
  import sys
  if importlib.util.find_spec("torchvision") is None:
    return
  import torch
  try:
    import torchvision  # noqa: F401
  except RuntimeError as e:
    if "torchvision::" not in str(e):
      raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
      del sys.modules[name]
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
      lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARIES.append(lib)
    import torchvision  # noqa: F401,F811


_LIBRARIES = []   # keeps the op library alive for the session
_importable_torchvision()


def pytest_configure(config):
  from talkjax.cli import enable_compilation_cache
  enable_compilation_cache()


def pytest_unconfigure(config):
  if _CREATED_CACHE is not None:
    import shutil
    shutil.rmtree(_CREATED_CACHE, ignore_errors=True)
