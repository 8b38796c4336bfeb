"""The config skeleton every experiment starts from.

Experiments call `base_config()` and change what differs, so no two config files repeat
the trainer, optimizer, mesh and checkpoint settings.
"""

from __future__ import annotations

import ml_collections

# Logical axis -> mesh axes. A rule whose mesh axis is already used by an earlier dimension
# of the same array is skipped (flax's resolution), so `embed` is FSDP-sharded in
# parameters but replicated in activations whose `batch` already took `fsdp`.
DEFAULT_AXIS_RULES = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("length", None),
    ("frames", None),
    ("height", None),
    ("width", None),
    ("channels", None),
    ("out_channels", None),   # an output head's few channels (RGB, flow + mask)
)


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.family = ""
  c.seed = 0
  # Parameters stay float32; this is the dtype of activations and matmuls.
  c.compute_dtype = "float32"

  c.model = ml_collections.ConfigDict()

  c.data = ml_collections.ConfigDict()
  c.data.batch_size = 16          # global batch, split evenly over processes
  c.data.num_examples = 4096
  c.data.eval_examples = 256
  c.data.worker_count = 0         # Grain worker processes per host; 0 = in-process
  c.data.shuffle = True

  c.train = ml_collections.ConfigDict()
  c.train.steps = 100
  c.train.log_every = 10
  c.train.eval_every = 0          # 0 = never
  c.train.grad_accum = 1          # micro-batches per step
  c.train.remat = False           # rematerialise blocks in the backward pass
  c.train.ema_decay = 0.0         # 0 = no EMA copy of the parameters
  c.train.robust_loss_threshold = 0.0   # >0: examples with a larger loss are masked out
  c.train.max_nonfinite_steps = 5       # consecutive NaN/Inf steps before stopping

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adamw"
  c.optimizer.lr = 1e-3
  c.optimizer.schedule = "cosine"  # cosine | constant (both after linear warm-up)
  c.optimizer.warmup_steps = 0
  c.optimizer.min_lr_ratio = 0.0
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.eps = 1e-8
  c.optimizer.weight_decay = 0.0
  c.optimizer.clip_norm = 1.0      # 0 = no clipping
  # Regexes over '/'-joined parameter paths ('trainable/block_0/attn/...'): frozen ones get
  # no gradient, no optimizer state and no EMA copy; lr_scales are (regex, factor) pairs,
  # the first match wins.
  c.optimizer.freeze = ()
  c.optimizer.lr_scales = ()

  # Stage chaining: start from another training folder's parameters (before step 0 only).
  # map: (source regex, replacement) pairs over '/'-joined paths such as
  # 'trainable/block_0/attn/to_q/kernel'; empty = every parameter to the same path.
  c.init_from = ml_collections.ConfigDict()
  c.init_from.workdir = ""
  c.init_from.map = ()
  c.init_from.ema = True           # the EMA copy of the source when it has one

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1                 # -1 = all remaining devices
  c.mesh.fsdp = 1
  c.mesh.tensor = 1
  c.axis_rules = DEFAULT_AXIS_RULES

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 50
  c.checkpoint.keep = 3
  c.checkpoint.best_metric = ""    # e.g. "eval_loss": also keep the best by this metric
  c.checkpoint.best_mode = "min"   # min | max: which direction of best_metric is better
  c.checkpoint.async_save = True

  # `talkjax launch tpu/gpu`: per-topology layouts, {"v5p-64": {"data": .., "fsdp": ..,
  # "tensor": .., "batch_size": ..(optional)}}; a topology without one gets the launcher's
  # default (launch/topologies.py).
  c.launch = ml_collections.ConfigDict()
  c.launch.presets = ml_collections.ConfigDict()
  return c
