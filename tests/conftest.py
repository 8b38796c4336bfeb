"""Test-wide setup: 8 fake CPU devices so sharding is tested without accelerators."""

import os

# Must happen before JAX initialises its backends (i.e. before any test imports jax).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Tests stay hermetic: no persistent XLA cache in ~/.cache (test_cli checks the cache itself).
os.environ.setdefault("TALKJAX_COMPILATION_CACHE", "off")
