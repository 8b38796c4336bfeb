"""The folders `talkjax convert` writes: config.json + params/ (Orbax) + report.txt.

`write` refuses a folder that already holds parameters (two models never mix); `read_params`
reads them back as numpy, or with `shardings` (a tree of NamedSharding matching the
parameters) straight into their places on a mesh.
"""

from __future__ import annotations

import json
import pathlib

from talkjax.errors import TalkjaxError


def write(out, meta: dict, params, report: list[str]) -> pathlib.Path:
  import orbax.checkpoint as ocp
  out = pathlib.Path(out).expanduser().absolute()
  if (out / "params").exists():
    raise TalkjaxError("the output folder already holds converted parameters", path=out,
                       fix="choose a new --out, or delete the folder first")
  out.mkdir(parents=True, exist_ok=True)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(out / "params", params)
  checkpointer.wait_until_finished()
  (out / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
  (out / "report.txt").write_text("\n".join(report) + "\n")
  return out


def read_params(folder, shardings=None) -> dict:
  import jax
  import numpy as np
  import orbax.checkpoint as ocp
  folder = pathlib.Path(folder).expanduser().absolute()
  checkpointer = ocp.StandardCheckpointer()
  metadata = checkpointer.metadata(folder / "params")
  tree = getattr(metadata, "item_metadata", None) or getattr(metadata, "tree", metadata)
  if shardings is None:
    target = jax.tree.map(lambda m: np.zeros(tuple(m.shape), m.dtype), dict(tree))
  else:
    target = jax.tree.map(lambda m, s: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=s),
                          dict(tree), shardings)
  return checkpointer.restore(folder / "params", target)
