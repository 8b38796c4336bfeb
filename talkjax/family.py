"""What a model family hands to the sampling pipelines: the generation hook.

The generation layer (talkjax/pipelines/) owns everything that is not the family's: loading
requests, bucketing, batch padding, the device mesh and parameter shardings (from
`config.mesh` and the same `config.axis_rules` training uses), one compile per bucket,
per-request seeds, chunk chaining over long audio, streaming, progress and writing. A family
implements the small hook below; see talkjax/models/README.md for a worked example.

The video is made chunk by chunk, `window` frames at a time, in a jitted loop over the chunks
(a fixed-size segment program whose chunk count is a runtime input: one compilation for
every duration):

    context, carry = hook.start(params, inputs, knobs)          # once per video
    carry, outputs = hook.chunk(params, context, carry, tracks, keys, knobs, runtime)

- `inputs`: {"image": uint8 (B, R, R, 3)} plus the per-example arrays of `request_inputs`
  and, when the hook has it, of `portrait_inputs(image, notes)` (host side, once per
  request: e.g. a face embedding computed by a recogniser outside the compiled program;
  it may append warnings to `notes`).
- `tracks`: {"audio": (B, audio_context + window * 640 + audio_lookahead)} at 16 kHz — the
  chunk's samples with the `audio_context` samples that precede them in front (silence
  before the start) and the `audio_lookahead` samples that follow them behind (silence
  after the end; a stream waits for them, so they add to its latency) — and
  "partner_audio" the same way when the family takes it.
- `keys`: (B, 2) uint32 PRNG keys, `fold_in(PRNGKey(seed), chunk_index)` per example, so a
  request draws the same numbers alone or in any batch, offline or streaming.
- `knobs`: the compiled part of the sampling settings (static); `runtime`: {name: (B,)
  float32} for the settings that are runtime inputs (`Knobs.RUNTIME`).
- `outputs`: {"frames": uint8 (B, window, R, R, 3), ...}; every output is cut into whole
  videos along axis 1 (e.g. IF-MDM also returns its "motion").
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Mapping, Protocol

import jax
import ml_collections
import numpy as np

from talkjax.errors import TalkjaxError

PyTree = Any
OPTIONAL_INPUTS = ("partner_audio", "emotion", "style_video")


@dataclasses.dataclass(frozen=True)
class Knobs:
  """Base of a family's sampling settings: a frozen dataclass of scalars.

  Fields listed in `RUNTIME` are runtime inputs (one value per example, so requests that
  differ only there share a compiled program and a batch); the others are compiled in.
  """
  RUNTIME: ClassVar[tuple[str, ...]] = ()
  FAMILY: ClassVar[str] = "this family's"
  CHOICES: ClassVar[dict] = {}    # word-valued settings -> their valid words (menus, checks)

  @classmethod
  def build(cls, defaults: Mapping | None = None, **overrides) -> "Knobs":
    """The config's defaults (`sample.*`) with `overrides`; unknown names and values of the
    wrong type are one-line errors naming the valid choices."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
      raise TalkjaxError(f"unknown {cls.FAMILY} sampling option(s) {unknown}",
                         fix=f"use {sorted(fields)}")
    values = {k: defaults[k] for k in fields if defaults is not None and k in defaults}
    values.update({k: v for k, v in overrides.items() if v is not None})
    for name, value in values.items():
      values[name] = _typed(name, value, fields[name].default)
    knobs = cls(**values)
    knobs.validate()
    return knobs

  def validate(self) -> None:
    """Raise TalkjaxError for values out of range."""

  def compiled_part(self) -> "Knobs":
    """These settings with the runtime ones at their defaults: what a batch must share."""
    defaults = {f.name: f.default for f in dataclasses.fields(self) if f.name in self.RUNTIME}
    return dataclasses.replace(self, **defaults)

  def runtime_values(self) -> dict[str, float]:
    return {name: float(getattr(self, name)) for name in self.RUNTIME}


def _typed(name: str, value, default):
  kind = type(default)
  if kind is bool:
    if isinstance(value, bool):
      return value
    if str(value).lower() in ("true", "false"):
      return str(value).lower() == "true"
  elif kind in (int, float) and not isinstance(value, bool):
    try:
      as_kind = kind(value)
      if (kind is int and float(value) != as_kind) or not math.isfinite(as_kind):
        raise ValueError
      return as_kind
    except (TypeError, ValueError):
      pass
  elif kind is str and isinstance(value, str):
    return value
  elif kind not in (bool, int, float, str):
    return value
  words = {int: "a whole number", float: "a number", bool: "true or false", str: "a word"}[kind]
  raise TalkjaxError(f"sampling option {name}={value!r} is not {words}",
                     fix=f"give {name} {words} (the default is {default!r})")


class GenerationHook(Protocol):
  """Built from the final stage's config by the family's `from_config` / `from_workdir`."""

  config: ml_collections.ConfigDict    # the final stage's (mesh, axis_rules, sample.*)
  linked: dict                         # {name: config} of the other stages it was built from
  fps: int
  window: int                          # frames per chunk
  resolution: int
  audio_context: int                   # samples of preceding audio each chunk sees
  audio_lookahead: int                 # samples of following audio each chunk sees
  accepts: frozenset                   # optional request inputs it takes (OPTIONAL_INPUTS)
  # with "style_video" in `accepts`: how many frames (at `fps`) of the reference clip it reads
  style_frames: int
  requires: frozenset                  # ... of which it cannot do without
  emotions: tuple                      # the emotion names it takes (optional; for menus)

  def knobs(self, **overrides) -> Knobs: ...

  def request_inputs(self, *, emotion: str | None = None,
                     style_video: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-example arrays for `inputs` from a request's optional fields (validated), their
    defaults when called with none. `style_video` (passed only to a hook that accepts it):
    the reference clip's `style_frames` frames, uint8 (S, R, R, 3), cropped like the
    portrait (talkjax.pipelines.inputs.load_reference_clip)."""

  def init(self, rng: jax.Array) -> PyTree:
    """Every weight generation uses, randomly initialised and boxed with logical axis
    names: the layout the parameters are sharded by, and random weights for benchmarks."""

  def start(self, params, inputs, knobs) -> tuple[PyTree, PyTree]:
    """(context: constant for the whole video, the first chunk's carried state)."""

  def chunk(self, params, context, carry, tracks, keys, knobs, runtime) -> tuple[PyTree, dict]:
    """One chunk of `window` frames: (the next carry, outputs)."""


def portrait_inputs(hook, image, notes: list) -> dict:
  """The hook's per-request arrays computed from the loaded portrait (none without
  `hook.portrait_inputs`)."""
  compute = getattr(hook, "portrait_inputs", None)
  return {} if compute is None else dict(compute(image, notes))
