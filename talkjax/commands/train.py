"""Train a model from an experiment config.

A config is a Python file under experiments/ (or its shipped name, e.g. testbed/tiny).
`--set key=value` overrides any value with type checking; `--dry-run` prints the resolved
config and the parameter count without training. Training in an existing --workdir resumes
from its latest checkpoint.
"""

from __future__ import annotations

from talkjax.errors import TalkjaxError

EXAMPLES = """\
examples:
  talkjax train --config testbed/tiny --dry-run
  talkjax train --config experiments/testbed/tiny.py --set train.steps=200 optimizer.lr=1e-3 --workdir runs/tb
  talkjax train --config testbed/tiny --set mesh.data=2 mesh.fsdp=2 mesh.tensor=2 --workdir runs/tb8
"""


def add_arguments(parser):
  parser.add_argument("--config", required=True,
                      help="config file (experiments/<family>/<name>.py[:arg]) or shipped name")
  parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                      metavar="KEY=VALUE", help="override config values, e.g. train.steps=10")
  parser.add_argument("--workdir", help="where checkpoints, metrics.jsonl and TensorBoard logs go")
  parser.add_argument("--dry-run", action="store_true",
                      help="print the resolved config and the parameter count, then exit")


def count_parameters(config) -> tuple[int, int, dict[str, int]]:
  """(all parameters, the trainable ones, {branch/network: count}) of the config's model;
  nothing is allocated (shapes only)."""
  import jax
  from talkjax.models import make_task
  from talkjax.train.state import abstract_params, split_params

  task = make_task(config)
  tree = abstract_params(task, config.seed)
  trainable, _ = split_params(tree, tuple(config.optimizer.freeze))
  count = lambda t: sum(int(x.size) for x in jax.tree.leaves(t))
  parts = {f"{branch}/{name}": count(sub) for branch, nets in tree.items()
           if isinstance(nets, dict) for name, sub in nets.items()}
  return count(tree), count(trainable), parts


def run(args):
  from talkjax.config import load_config, to_text

  config = load_config(args.config, args.overrides)
  if args.dry_run:
    print(to_text(config))
    n, trainable, parts = count_parameters(config)
    print(f"parameters: {n:,} ({n * 4 / 2**20:.2f} MiB as float32); trainable {trainable:,}, "
          f"frozen {n - trainable:,}")
    width = max(map(len, parts), default=0)
    for name, k in parts.items():
      print(f"  {name:<{width}}  {k:>15,}")
    return 0
  if not args.workdir:
    raise TalkjaxError("--workdir is required to train (checkpoints and metrics go there)",
                       fix="add --workdir runs/NAME; an existing workdir is resumed")
  from talkjax import parallel
  parallel.initialize_distributed()
  from talkjax.models import make_task
  from talkjax.train.loop import train

  last = train(config, make_task(config), args.workdir)
  import jax
  if jax.process_index() == 0:
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in last.items() if k in ("step", "loss", "examples_per_s", "eval_loss"))
    print(f"done: {shown}; checkpoints and metrics.jsonl in {args.workdir}")
  return 0
