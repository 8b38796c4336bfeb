"""`talkjax bench train`: steps/s, examples/s and model FLOP utilisation of a config.

MFU = (FLOPs of one step) / (step time) / (peak FLOP/s per device x device count).

The FLOPs are counted from the step's jaxpr (`talkjax.flops`): the matmul and convolution
FLOPs of the global program, forward and backward (the PaLM MFU convention), on every
platform the same. XLA's compiled cost analysis is printed beside it as `xla_compiled_flops`
but not used: on GPU it does not count the cuBLAS/cuDNN custom calls the matmuls and
convolutions become, and reported 40x too little for a DiT step. `xla_lowered_flops` is
XLA's cost analysis of the un-optimised program, a cross-check (it also counts elementwise
ops, and a scan's body once, so it differs under gradient accumulation).

Peaks are the vendors' dense bf16 figures per chip; on a CPU, where no such figure exists,
the peak is measured with a large float32 matmul and reported as such.
"""

from __future__ import annotations

import json
import time

EXAMPLES = """\
  talkjax bench train --config testbed/tiny --json bench.json
  talkjax bench train --config testbed/tiny --steps 50 --set data.batch_size=64
"""

# device_kind substring -> dense bf16 peak FLOP/s per device (vendor data sheets).
PEAK_FLOPS = {
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v5": 459e12,
    "TPU v6 lite": 918e12,
    "TPU v6e": 918e12,
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L4": 121e12,
    "A10": 125e12,
}


def add_arguments(parser):
  parser.add_argument("--config", required=True, help="experiment config (path or shipped name)")
  parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                      metavar="KEY=VALUE", help="config overrides")
  parser.add_argument("--steps", type=int, default=20, help="timed steps after warm-up")
  parser.add_argument("--warmup", type=int, default=3, help="untimed steps (compilation)")


def peak_flops_per_device(device) -> tuple[float, str]:
  for name, peak in PEAK_FLOPS.items():
    if name.lower() in device.device_kind.lower():
      return peak, f"{name} dense bf16 data sheet"
  return measured_matmul_peak(device), "measured float32 matmul (no data-sheet peak for this device)"


def measured_matmul_peak(device, n: int = 1024, repeats: int = 10) -> float:
  import jax
  import jax.numpy as jnp
  a = jax.device_put(jnp.ones((n, n), jnp.float32), device)
  mm = jax.jit(lambda x: x @ x)
  mm(a).block_until_ready()
  t = time.perf_counter()
  for _ in range(repeats):
    out = mm(a)
  out.block_until_ready()
  return 2 * n**3 * repeats / (time.perf_counter() - t)


def prepare(config, task, total_steps: int):
  """The jitted training step (with its shardings), a state, one global batch and the mesh."""
  import jax
  import numpy as np
  from talkjax import parallel
  from talkjax.train.optimizer import make_optimizer
  from talkjax.train.state import abstract_trainable, create_state
  from talkjax.train.step import make_train_step

  rules = config.axis_rules
  mesh = parallel.make_mesh(config.mesh)
  freeze = tuple(config.optimizer.freeze)
  tx, schedule = make_optimizer(config.optimizer, max(config.train.steps, total_steps),
                                abstract_trainable(task, freeze, config.seed))
  state, state_sh = create_state(task, tx, mesh, rules, config.seed,
                                 ema=config.train.ema_decay > 0, freeze=freeze)
  batch_sh = parallel.batch_shardings(task.batch_axes(), mesh, rules)
  source = task.data_source("train")
  n = config.data.batch_size
  local = {k: np.stack([source[i % len(source)][k] for i in range(n)]) for k in task.batch_axes()}
  step_fn = jax.jit(make_train_step(task, tx, schedule, config.train, config.seed),
                    in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, None),
                    donate_argnums=0)
  with parallel.use_mesh(mesh, rules):
    batch = parallel.global_batch(local, batch_sh)
  return step_fn, state, batch, mesh


def measure(config, task, steps: int, warmup: int) -> dict:
  import jax
  from talkjax import flops, parallel

  step_fn, state, batch, mesh = prepare(config, task, steps + warmup)
  with parallel.use_mesh(mesh, config.axis_rules):
    traced = step_fn.trace(state, batch)
    counted = flops.count_jaxpr(traced.jaxpr)  # global FLOPs: the jaxpr is the whole program
    lowered = traced.lower()
    lowered_flops = flops.lowered_flops(lowered)  # un-partitioned, so global too
    compiled = lowered.compile()
    # One device's partition after backend rewriting, scaled to all devices. On GPU it
    # misses the cuBLAS/cuDNN custom calls (0 or far too low); shown only for comparison.
    per_device = flops.compiled_flops(compiled)
    compiled_flops = per_device * jax.device_count() if per_device is not None else None
    for _ in range(warmup):
      state, metrics = compiled(state, batch)
    jax.block_until_ready(state)
    t = time.perf_counter()
    for _ in range(steps):
      state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    elapsed = time.perf_counter() - t
  if counted.total > 0:
    total_flops, flops_source = counted.total, "jaxpr (dot_general + conv, global)"
  elif lowered_flops:
    total_flops, flops_source = lowered_flops, "xla_lowered (no matmul or conv in the jaxpr)"
  else:
    total_flops, flops_source = compiled_flops or 0.0, "xla_compiled"
  peak, source_of_peak = peak_flops_per_device(jax.devices()[0])
  step_time = elapsed / steps
  n = config.data.batch_size
  result = {
      "config_family": config.family, "device": jax.devices()[0].device_kind,
      "device_count": jax.device_count(), "mesh": dict(zip(mesh.axis_names, mesh.devices.shape)),
      "global_batch": n, "steps_per_s": 1 / step_time, "examples_per_s": n / step_time,
      "step_time_ms": 1e3 * step_time, "flops_per_step": total_flops,
      "flops_source": flops_source, "elementwise_flops": counted.elementwise,
      "xla_lowered_flops": lowered_flops, "xla_compiled_flops": compiled_flops,
      "peak_flops_per_device": peak, "peak_source": source_of_peak,
      "mfu": total_flops / step_time / (peak * jax.device_count()) if total_flops else None,
      "peak_device_bytes": parallel.peak_device_bytes(),   # None on CPU
  }
  if counted.while_loops:
    result["flops_note"] = (f"{counted.while_loops} while loop(s) counted once each: "
                            "flops_per_step is a lower bound")
  if counted.opaque:
    result["flops_uncounted"] = ", ".join(counted.opaque)
  return result


def run(args):
  from talkjax.config import load_config
  from talkjax.models import make_task
  from talkjax import parallel

  config = load_config(args.config, args.overrides)
  parallel.initialize_distributed()
  result = measure(config, make_task(config), args.steps, args.warmup)
  width = max(len(k) for k in result)
  for k, v in result.items():
    shown = f"{v:.4g}" if isinstance(v, float) else v
    print(f"{k:<{width}}  {shown}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)
  return 0
