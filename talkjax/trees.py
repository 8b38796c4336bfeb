"""Parameter trees as nested dicts: '/'-joined paths, splitting, merging, leaf replacement.

The trainer keeps trainable and frozen parameters in two trees that together make the tree
a task's `init` returns; `split` and `merge` go between the two views. A leaf is anything
that is not a dict, so boxed leaves (`nn.Partitioned`) stay whole.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

PyTree = Any


def path_name(path) -> str:
  """'/'-joined key path of jax.tree_util, e.g. 'trainable/block_0/attn/to_q/kernel'."""
  parts = []
  for p in path:
    parts.append(str(getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))))
  return "/".join(parts)


def flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
  """{'a/b/c': leaf} for every leaf of a nested dict."""
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      out.update(flatten(value, name + "/"))
    else:
      out[name] = value
  return out


def unflatten(flat: Mapping[str, Any]) -> dict:
  out: dict = {}
  for name, value in flat.items():
    node = out
    *parents, last = name.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[last] = value
  return out


def split(tree: Mapping, goes_left: Callable[[str], bool]) -> tuple[dict, dict]:
  """(leaves whose path `goes_left`, the others), each a nested dict without empty branches."""
  left, right = {}, {}
  for name, leaf in flatten(tree).items():
    (left if goes_left(name) else right)[name] = leaf
  return unflatten(left), unflatten(right)


def merge(*trees: Mapping | None) -> dict:
  """One nested dict holding the leaves of all `trees` (which must not share a leaf)."""
  flat: dict = {}
  for tree in trees:
    for name, leaf in flatten(tree or {}).items():
      if name in flat:
        raise ValueError(f"two trees hold the leaf {name!r}")
      flat[name] = leaf
  return unflatten(flat)

