"""Measure speed. Results print as a table and, with --json FILE, are written as JSON.

Speed and memory goals are measured here, never in the test suite. Each target lives next to
the code it measures and defines `add_arguments(parser)` and `run(args)`.
"""

from __future__ import annotations

import importlib

from talkjax.commands import add_subcommand, missing

EXAMPLES = """\
examples:
  talkjax bench train --config testbed/tiny --json bench.json
  talkjax bench audio --json audio.json
  talkjax bench sample --config experiments/ifmdm/synthtalk_tiny_stage2.py
  talkjax bench backbone --reference --json backbone.json
  talkjax bench serve --requests 200 --clients 16 --json serve.json
  talkjax bench data --data data/hdtf --json data.json
"""

# target -> (module, summary, what is missing while the module does not exist)
TARGETS = {
    "train": ("talkjax.train.bench", "train steps/s, examples/s and model FLOP utilisation",
              "the scale-out training work (talkjax/train/)"),
    "audio": ("talkjax.audio.bench", "seconds of compute per minute of audio, per stage",
              "the audio front-end work (talkjax/audio/)"),
    "sample": ("talkjax.pipelines.bench", "sampling frames per second, batch 1 and batched",
               "the IF-MDM and pipelines work (talkjax/pipelines/)"),
    "serve": ("talkjax.serve.bench", "a bounded load test of talkjax serve beside talkjax "
              "sample --manifest: throughput, latency, memory", "the serving work (talkjax/serve/)"),
    "data": ("talkjax.data.bench", "windows/s a built dataset delivers through the Grain "
             "loader (1, 2, 4 workers), and a raw folder's build throughput",
             "the real-datasets work (datasets/, talkjax/data/)"),
    "backbone": ("talkjax.nn.bench", "latent-diffusion VAE decode and UNet forward, beside "
                 "diffusers", "the latent backbone (talkjax/nn/vae.py, unet.py)"),
}


def _module(name):
  try:
    return importlib.import_module(name)
  except ModuleNotFoundError as e:
    if e.name and name.startswith(e.name):
      return None
    raise


def add_arguments(parser):
  targets = parser.add_subparsers(dest="target", metavar="TARGET", required=True)
  for target, (module_name, summary, _) in TARGETS.items():
    module = _module(module_name)
    sub = add_subcommand(targets, target, help=summary,
                         examples=getattr(module, "EXAMPLES", f"  talkjax bench {target}\n"))
    if module is not None:
      module.add_arguments(sub)
    sub.add_argument("--json", help="also write the results to this JSON file")
    sub.set_defaults(_target_module=module_name)


def run(args):
  module = _module(args._target_module)
  if module is None:
    _, summary, where = TARGETS[args.target]
    raise missing(f"bench {args.target}", f"the benchmark of {summary}", where)
  return module.run(args)
