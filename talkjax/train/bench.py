"""`talkjax bench train`: steps/s, examples/s and model FLOP utilisation of a config.

MFU = (XLA's cost-analysis FLOPs of one compiled step) / (step time) / (peak FLOP/s of all
devices). Peaks are the vendors' dense bf16 figures per chip; on a CPU, where no such
figure exists, the peak is measured with a large float32 matmul and reported as such.
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


def measure(config, task, steps: int, warmup: int) -> dict:
  import jax
  import numpy as np
  from talkjax import parallel
  from talkjax.train.optimizer import make_optimizer
  from talkjax.train.state import abstract_trainable, create_state
  from talkjax.train.step import make_train_step

  rules = config.axis_rules
  mesh = parallel.make_mesh(config.mesh)
  freeze = tuple(config.optimizer.freeze)
  tx, schedule = make_optimizer(config.optimizer, max(config.train.steps, steps + warmup),
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
    compiled = step_fn.lower(state, batch).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", 0.0)) if cost else 0.0
    for _ in range(warmup):
      state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    t = time.perf_counter()
    for _ in range(steps):
      state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    elapsed = time.perf_counter() - t
  peak, source_of_peak = peak_flops_per_device(jax.devices()[0])
  step_time = elapsed / steps
  # cost_analysis reports the FLOPs of one device's partition of the program.
  total_flops = flops * jax.device_count() if flops else 0.0
  return {
      "config_family": config.family, "device": jax.devices()[0].device_kind,
      "device_count": jax.device_count(), "mesh": dict(zip(mesh.axis_names, mesh.devices.shape)),
      "global_batch": n, "steps_per_s": 1 / step_time, "examples_per_s": n / step_time,
      "step_time_ms": 1e3 * step_time, "flops_per_step": total_flops,
      "peak_flops_per_device": peak, "peak_source": source_of_peak,
      "mfu": total_flops / step_time / (peak * jax.device_count()) if total_flops else None,
  }


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
