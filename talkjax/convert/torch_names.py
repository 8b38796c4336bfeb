"""PyTorch state-dict names and layouts -> Flax parameter trees, with a full accounting.

Flax modules that mirror a PyTorch model's module names ("down_blocks.1.resnets.0.conv1"
becomes down_blocks_1/resnets_0/conv1) convert mechanically:
- `weight` of 4 dims: Conv2d (out, in/groups, kh, kw) -> Conv `kernel` (kh, kw, in/groups, out);
- `weight` of 3 dims: Conv1d (out, in/groups, k) -> Conv `kernel` (k, in/groups, out);
- `weight` of 2 dims: Linear (out, in) -> Dense `kernel` (in, out);
- `weight` of 1 dim: a norm's affine scale (GroupNorm, LayerNorm, BatchNorm) -> `scale`;
- `bias` unchanged.
`place` then checks the converted tensors against the shapes the Flax model expects and
names every missing, unexpected and mis-shaped tensor in one error, before anything is
written.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from talkjax.errors import TalkjaxError

Path = tuple[str, ...]


def module_path(torch_key: str) -> Path:
  """"a.b.3.c.weight" -> ("a", "b_3", "c", "weight"): numeric parts join their owner."""
  merged: list[str] = []
  for part in torch_key.split("."):
    if part.isdigit() and merged:
      merged[-1] = f"{merged[-1]}_{part}"
    else:
      merged.append(part)
  return tuple(merged)


def to_flax(torch_key: str, array: np.ndarray) -> tuple[Path, np.ndarray]:
  *module, leaf = module_path(torch_key)
  array = np.asarray(array, np.float32)
  if leaf == "weight":
    if array.ndim == 4:
      return tuple(module) + ("kernel",), np.transpose(array, (2, 3, 1, 0))
    if array.ndim == 3:
      return tuple(module) + ("kernel",), np.transpose(array, (2, 1, 0))
    if array.ndim == 2:
      return tuple(module) + ("kernel",), array.T
    if array.ndim == 1:
      return tuple(module) + ("scale",), array
  if leaf == "bias":
    return tuple(module) + ("bias",), array
  raise KeyError(torch_key)


def split_axes(value: np.ndarray, want: tuple | None) -> np.ndarray:
  """`value` reshaped to the Flax layout `want` where the two differ only by a fused axis
  PyTorch keeps flat: (in, H*D) -> (in, H, D) and (H*D, out) -> (H, D, out) for attention
  projections (heads outer, as torch's `view(.., heads, head_dim)` reads them), (2*I,) ->
  (2, I) and (in, 2*I) -> (in, 2, I) for a GEGLU's value/gate halves, (1, 1, in, out) ->
  (in, out) for a 1x1 conv kept as a dense kernel. Anything else is returned as is, so a
  truly mis-shaped tensor still fails the shape check."""
  if want is None or value.shape == tuple(want) or value.size != int(np.prod(want)):
    return value
  want = tuple(want)
  fused = (len(want) == 3 and value.shape in ((want[0], want[1] * want[2]),
                                              (want[0] * want[1], want[2]))
           or len(want) == 2 and value.shape in ((want[0] * want[1],), (1, 1) + want))
  return value.reshape(want) if fused else value


def flatten(tree: Mapping, prefix: Path = ()) -> dict[Path, object]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(flatten(v, prefix + (k,)))
    else:
      out[prefix + (k,)] = v
  return out


def unflatten(flat: Mapping[Path, object]) -> dict:
  tree: dict = {}
  for key, value in flat.items():
    node = tree
    for k in key[:-1]:
      node = node.setdefault(k, {})
    node[key[-1]] = value
  return tree


def place(tensors: Mapping[str, np.ndarray], expected: Mapping[Path, tuple], *, what: str,
          path=None, convert: Callable[[str, np.ndarray], tuple[Path, np.ndarray]] = to_flax,
          fix: str = "check that config.json matches the weights") -> tuple[dict, list[str]]:
  """(nested Flax params, report lines "torch name -> flax/path shape") for `tensors`.

  `expected` maps each Flax path to its shape (from `jax.eval_shape` of the model's init).
  Raises one TalkjaxError naming every unexpected, mis-shaped and missing tensor."""
  flat, report, unexpected, misshaped = {}, [], [], []
  for key in sorted(tensors):
    try:
      flax_key, value = convert(key, tensors[key])
    except KeyError:
      unexpected.append(key)
      continue
    if flax_key not in expected:
      unexpected.append(key)
    elif tuple(expected[flax_key]) != value.shape:
      misshaped.append(f"{key} {tuple(np.shape(tensors[key]))} (needs "
                       f"{tuple(expected[flax_key])} as {'/'.join(flax_key)})")
    else:
      flat[flax_key] = value
      report.append(f"{key} -> {'/'.join(flax_key)} {value.shape}")
  missing = sorted("/".join(k) for k in expected if k not in flat
                   and not any(m.endswith("/".join(k) + ")") for m in misshaped))
  problems = []
  for label, names in (("unexpected", unexpected), ("mis-shaped", misshaped),
                       ("missing", missing)):
    if names:
      shown = ", ".join(names[:4]) + (f" (+{len(names) - 4} more)" if len(names) > 4 else "")
      problems.append(f"{len(names)} {label}: {shown}")
  if problems:
    raise TalkjaxError(f"the {what} checkpoint does not fit the model: " + "; ".join(problems),
                       path=path, fix=fix)
  return unflatten(flat), report
