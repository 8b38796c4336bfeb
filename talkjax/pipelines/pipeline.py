"""One pipeline for every family: requests -> the sampling engine -> frames + the audio used.

```python
pipe = Pipeline.load("runs/talker_stage2")              # a training folder or a model file
result = pipe("face.png", "speech.wav", seed=0, std_scale=1.2)
result.frames   # uint8 (T, R, R, 3) at result.fps;  result.audio: 16 kHz, exactly T frames long
pipe = Pipeline.load("runs/dyadic", mesh={"fsdp": 8})   # parameters FSDP-sharded
pipe("face.png", "me.wav", partner_audio="you.wav", emotion="happy")
pipe("face.png", "me.wav", style_video="reference.mp4")   # motion style of another clip
```

`run(requests)` samples many requests: they are bucketed by length (whole chunks of the
generator's window) and compiled sampling options, each bucket is cut into batches of a
fixed size (the last one padded), and every batch is one sharded call (sampler.py), so each
bucket compiles once. A request's noise depends only on its own seed, so it gets the same
frames alone or in any batch. A request whose inputs are bad is reported and skipped; the
others still run. Every request field (image, audio, partner audio, emotion, style video,
options) reaches the family; one it does not take is refused with a clear error. With a `sink`
(e.g. writing.ResultWriter), frames go to it piece by piece as they are made instead of
being held: memory then does not grow with the length of the audio.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from talkjax.audio.align import pad_or_trim
from talkjax.errors import TalkjaxError
from talkjax.family import OPTIONAL_INPUTS, portrait_inputs
from talkjax.pipelines.inputs import (SYNTHTALK_FRAMING, load_image, load_request_audio,
                                      style_request)

SAMPLE_RATE = 16000


@dataclasses.dataclass
class Request:
  image: Any                      # path or array
  audio: Any                      # path or 16 kHz array
  partner_audio: Any = None
  emotion: str | None = None
  seed: int = 0
  knobs: dict = dataclasses.field(default_factory=dict)
  name: str = ""                  # for reports and default output names
  out: str | None = None
  style_video: Any = None         # a reference clip (path or uint8 frames) whose motion style
                                  # the video takes (families that read one)


@dataclasses.dataclass
class Result:
  name: str
  frames: np.ndarray | None       # uint8 (T, R, R, 3); None when a sink took them
  audio: np.ndarray               # float32, 16 kHz, padded/trimmed to T frames
  fps: int
  crop: str
  request: Request | None = None
  track: str | None = None        # the user's audio file: the sound of the written video
  warnings: list = dataclasses.field(default_factory=list)
  files: list = dataclasses.field(default_factory=list)   # what a sink wrote
  length: int = 0                 # frames


@dataclasses.dataclass
class Failure:
  name: str
  error: str
  request: Request | None = None
  exception: Exception | None = None


@dataclasses.dataclass
class _Prepared:
  index: int
  request: Request
  image: np.ndarray
  audio: np.ndarray
  partner_audio: np.ndarray | None
  inputs: dict                    # the family's per-example arrays (e.g. an emotion id)
  frames: int
  chunks: int
  knobs: Any
  crop: str
  warnings: list


class Pipeline:
  def __init__(self, sampler, *, crop: str = "auto", batch_size: int = 8, separator=None):
    """`separator`: a `talkjax.audio.separate.VocalSeparator` the speech goes through
    first (the model hears the vocal stem; a video of a file keeps the file's sound)."""
    if int(batch_size) < 1:
      raise TalkjaxError(f"the batch size must be at least 1, got {batch_size}",
                         fix="e.g. --batch-size 8")
    self.sampler, self.crop, self.batch_size = sampler, crop, int(batch_size)
    self.separator = separator

  @classmethod
  def load(cls, checkpoint, *, mesh=None, **kwargs) -> "Pipeline":
    """From a training folder or a model file; `mesh` overrides the config's mesh sizes."""
    from talkjax.pipelines.sampler import Sampler
    return cls(Sampler.load(checkpoint, mesh=mesh), **kwargs)

  @property
  def fps(self) -> int:
    return int(self.sampler.fps)

  def __call__(self, image, audio, partner_audio=None, emotion=None, seed: int = 0,
               style_video=None, **knobs) -> Result:
    out = next(iter(self.run([Request(image, audio, partner_audio, emotion, seed, knobs,
                                      style_video=style_video)], progress=False)))
    if isinstance(out, Failure):
      raise out.exception
    return out

  def portrait(self, source):
    """A portrait (path or array) -> (the square RGB image the model sees, how it was
    cropped, warnings), framed as the family's training data frames faces."""
    return load_image(source, self.sampler.resolution, self.crop, self.framing)

  @property
  def framing(self):
    return getattr(self.sampler.hook, "face_framing", SYNTHTALK_FRAMING)

  def prepare(self, request: Request, index: int = 0) -> _Prepared:
    """Loads and checks one request's inputs (cheap, before any sampling work)."""
    g = self.sampler
    family = g.hook.config.family
    for field in OPTIONAL_INPUTS:
      value = getattr(request, field)
      words = field.replace("_", " ")
      if value is not None and field not in g.accepts:
        raise TalkjaxError(f"this {family} model takes no {words}",
                           fix=getattr(g.hook, "refusals", {}).get(
                               field, "drop it, or use a family that takes it"))
      if value is None and field in g.requires:
        raise TalkjaxError(f"this {family} model needs the {words}", fix=f"give the {words}")
    if isinstance(request.seed, bool) or not isinstance(request.seed, (int, np.integer)) \
        or not 0 <= int(request.seed) < 2 ** 32:
      raise TalkjaxError(f"seed {request.seed!r} must be a whole number in 0..{2 ** 32 - 1}",
                         fix="pick another seed")
    knobs = g.knobs(**request.knobs)
    # a reference clip, cropped as the portrait is (the box found on its first frame)
    given, clip_notes = style_request(g.hook, request.style_video, g.resolution, self.crop,
                                      self.framing, fps=self.fps)
    inputs = g.hook.request_inputs(emotion=request.emotion, **given)
    image, crop, notes = self.portrait(request.image)
    notes += clip_notes
    inputs.update(portrait_inputs(g.hook, image, notes))
    audio = load_request_audio(request.audio, notes=notes, separator=self.separator)
    partner = None
    if request.partner_audio is not None:  # the video follows the agent's audio
      partner = load_request_audio(request.partner_audio, what="partner audio", notes=notes,
                                   separator=self.separator)
      partner = np.pad(partner, (0, max(0, len(audio) - len(partner))))[:len(audio)]
    frames = -(-len(audio) // (SAMPLE_RATE // self.fps))
    chunks = -(-frames // g.window)
    return _Prepared(index, request, image, audio, partner, inputs, frames, chunks, knobs, crop,
                     notes)

  def run(self, requests: Iterable[Request], progress: bool = True,
          sink: Callable[[Result], Any] | None = None) -> Iterator[Result | Failure]:
    """Yields one Result or Failure per request, each batch as soon as it is done.

    `sink(result)` (frames not yet made) returns a writer with write(frames), close() ->
    files and abort(); it then receives every frame instead of the Result holding them,
    and a writer that fails turns its request into a Failure (the others go on)."""
    from tqdm import tqdm
    prepared, buckets = [], {}
    requests = list(requests)
    for i, request in enumerate(requests):
      request.name = request.name or f"request_{i:04d}"
      try:
        p = self.prepare(request, i)
      except TalkjaxError as e:
        yield Failure(request.name, e.one_line(), request, e)
        continue
      prepared.append(p)
      buckets.setdefault(self.bucket(p), []).append(p)
    bar = tqdm(total=sum(p.frames for p in prepared), unit="frame", disable=not progress,
               desc="sampling", dynamic_ncols=True)
    try:
      for _, items in sorted(buckets.items(), key=lambda kv: kv[0][0]):
        # A bucket smaller than the batch size runs at its own size (no idle padded rows);
        # either way every batch of a bucket has one shape: one compile.
        size = min(self.batch_size, len(items))
        for start in range(0, len(items), size):
          yield from self.sample_batch(items[start:start + size], size, sink, bar)
    finally:
      bar.close()

  @staticmethod
  def bucket(p: _Prepared) -> tuple:
    """What requests sampled in one batch share: their length in chunks and the compiled
    sampling settings (requests differing only in a runtime knob, e.g. std_scale, share one)."""
    return p.chunks, p.knobs.compiled_part()

  def sample_batch(self, batch: list[_Prepared], size: int, sink=None,
                   bar=None) -> Iterator[Result | Failure]:
    """Prepared requests of one bucket as one call of `size` rows (>= len(batch); the
    rest padded, so batches of a size share a compiled program); see `run` for `sink`."""
    g = self.sampler
    if not batch or size < len(batch) or len({self.bucket(p) for p in batch}) != 1:
      raise ValueError("sample_batch takes 1..size prepared requests of one bucket")
    chunks = batch[0].chunks
    samples = chunks * g.chunk_samples
    pad = size - len(batch)                      # fixed batch shape: one compile per bucket
    rows = batch + [batch[-1]] * pad
    track = lambda x: np.pad(x, (0, samples - len(x)))
    images = np.stack([p.image for p in rows])
    audio = np.stack([track(p.audio) for p in rows])
    partner = None
    if "partner_audio" in g.accepts:
      partner = np.stack([track(p.partner_audio if p.partner_audio is not None
                                else np.zeros_like(p.audio)) for p in rows])
    inputs = {k: np.stack([p.inputs[k] for p in rows]) for k in rows[0].inputs}
    results = [self._result(p) for p in batch]
    writers: list = [None] * len(batch)
    failed: dict[int, Failure] = {}
    for i, result in enumerate(results):
      try:
        writers[i] = sink(result) if sink is not None else _InMemory(result)
      except (TalkjaxError, OSError) as e:
        failed[i] = self._failure(result, e)
    done = 0
    try:
      for segment in g.segments(images, audio, partner_audio=partner, inputs=inputs,
                                seed=[p.request.seed for p in rows],
                                knobs=[p.knobs for p in rows], chunks=chunks):
        count = segment["frames"].shape[1]
        for i, p in enumerate(batch):
          frames = segment["frames"][i, :max(0, p.frames - done)]
          if not len(frames) or i in failed:
            continue
          try:
            writers[i].write(frames)
          except (TalkjaxError, OSError) as e:
            writers[i].abort()
            failed[i] = self._failure(results[i], e)
        if bar is not None:
          bar.update(sum(min(count, max(0, p.frames - done)) for p in batch))
        done += count
    except TalkjaxError as e:   # the batch cannot run (e.g. too big): its requests fail
      failed.update({i: self._failure(r, e) for i, r in enumerate(results) if i not in failed})
    except BaseException:       # interrupted: no half-written file keeps its name
      for w in writers:
        if w is not None:
          w.abort()
      raise
    for i, result in enumerate(results):
      if i in failed:
        if writers[i] is not None:
          writers[i].abort()
        yield failed[i]
        continue
      try:
        result.files = writers[i].close()
        result.warnings += getattr(writers[i], "notes", [])
      except (TalkjaxError, OSError) as e:
        writers[i].abort()
        yield self._failure(result, e)
        continue
      yield result

  def _result(self, p: _Prepared) -> Result:
    source = p.request.audio
    track = str(source) if isinstance(source, (str, os.PathLike)) else None
    return Result(p.request.name, None, pad_or_trim(p.audio, p.frames, self.fps), self.fps,
                  p.crop, p.request, track=track, warnings=list(p.warnings), length=p.frames)

  @staticmethod
  def _failure(result: Result, error: Exception) -> Failure:
    text = error.one_line() if isinstance(error, TalkjaxError) else \
        f"writing failed ({type(error).__name__}: {error})"
    return Failure(result.name, text, result.request, error)


class _InMemory:
  """The writer when no sink is given: the frames end up in `result.frames`."""

  def __init__(self, result: Result):
    self.result, self.pieces = result, []

  def write(self, frames) -> None:
    self.pieces.append(frames)

  def close(self) -> list:
    self.result.frames = np.concatenate(self.pieces)
    return []

  def abort(self) -> None:
    self.pieces = []
