"""The job queue behind `talkjax serve`: requests in one at a time, batches out.

HTTP handlers call `Service.submit` with a request whose inputs are already saved in its
job folder; it is checked right away (`Pipeline.prepare`: the inputs' real checks, the
options, the duration limit), so a bad request is refused before it queues. One worker
thread owns the sampler: it takes the oldest job, waits up to `max_wait` for more jobs of
its bucket (same length in chunks and compiled options), and samples up to `max_batch` of
them as one sharded call. Batches are padded to a power of two rows (at most `max_batch`),
so a bucket compiles at most log2(max_batch) + 1 programs however the load varies, and a
quiet server does not pay for eight rows to serve one. Every job's noise comes from its own
seed, so its video equals the same request sampled alone.

Memory is bounded: at most `max_queue` jobs wait (a full queue refuses with `QueueFull`,
which the HTTP layer turns into 503 + Retry-After, so no accepted job is ever dropped), and
a finished job's folder is deleted `retention` seconds after it finished.
"""

from __future__ import annotations

import dataclasses
import itertools
import pathlib
import secrets
import shutil
import threading
import time
import traceback
from collections import Counter
from typing import Any

from talkjax.errors import TalkjaxError
from talkjax.pipelines.pipeline import Failure, Pipeline, Request
from talkjax.pipelines.writing import ResultWriter

VIDEO = "video.mp4"


class QueueFull(Exception):
  """No room for another job now; `retry_after` seconds is a fair wait."""

  def __init__(self, retry_after: int):
    super().__init__(f"the queue is full; retry in {retry_after} s")
    self.retry_after = retry_after


class TooLong(TalkjaxError):
  """The request's audio is longer than this server takes (HTTP 413)."""


@dataclasses.dataclass
class Job:
  id: str
  folder: pathlib.Path
  request: Request
  created: float = dataclasses.field(default_factory=time.time)
  status: str = "queued"          # queued -> running -> done | failed
  prepared: Any = None            # the checked inputs, until the job has run
  bucket: tuple = ()
  frames: int = 0
  frames_done: int = 0
  fps: int = 25
  crop: str = ""
  warnings: list = dataclasses.field(default_factory=list)
  error: str = ""
  batch_size: int = 0             # requests sampled in the job's call (padding excluded)
  finished: float | None = None

  @property
  def video(self) -> pathlib.Path:
    return self.folder / VIDEO

  def public(self, *, queue_position: int | None = None, retention: float = 0.0) -> dict:
    """The job as the API shows it (messages name its files, not the server's folder)."""
    scrub = lambda text: text.replace(str(self.folder) + "/", "")
    out = {"id": self.id, "name": self.request.name, "status": self.status,
           "frames": self.frames, "frames_done": self.frames_done,
           "progress": round(self.frames_done / self.frames, 4) if self.frames else 0.0,
           "seconds": round(self.frames / self.fps, 3), "fps": self.fps, "crop": self.crop,
           "seed": int(self.request.seed), "emotion": self.request.emotion,
           "partner_audio": self.request.partner_audio is not None,
           "style_video": self.request.style_video is not None,
           "options": dict(self.request.knobs),
           "warnings": [scrub(w) for w in self.warnings]}
    if queue_position is not None:
      out["queue_position"] = queue_position
    if self.batch_size:
      out["batch_size"] = self.batch_size
    if self.status == "done":
      out["video"] = f"/jobs/{self.id}/video"
    if self.status == "failed":
      out["error"] = scrub(self.error)
    if self.finished is not None:
      out["expires_in"] = max(0, round(self.finished + retention - time.time()))
    return out


class _Progress:
  """A ResultWriter that counts the frames it has been given into its job."""

  def __init__(self, job: Job, writer: ResultWriter):
    self.job, self.writer = job, writer

  def write(self, frames) -> None:
    self.writer.write(frames)
    self.job.frames_done += len(frames)

  def close(self) -> list:
    return self.writer.close()

  def abort(self) -> None:
    self.writer.abort()

  @property
  def notes(self) -> list:
    return getattr(self.writer, "notes", [])


def batch_rows(jobs: int, max_batch: int) -> int:
  """Rows of the call that samples `jobs` requests: the next power of two, at most max_batch."""
  rows = 1
  while rows < jobs:
    rows *= 2
  return min(rows, max(max_batch, jobs))


class Service:
  def __init__(self, pipe: Pipeline, root, *, max_batch: int = 8, max_wait_ms: float = 200,
               max_queue: int = 64, max_seconds: float = 60.0, retention_s: float = 600.0):
    if max_batch < 1 or max_queue < 1 or max_seconds <= 0 or retention_s < 0 or max_wait_ms < 0:
      raise TalkjaxError("max_batch and max_queue must be at least 1, max_seconds positive, "
                         "max_wait_ms and retention_s not negative",
                         fix="e.g. --max-batch 8 --max-queue 64 --max-seconds 60")
    self.pipe, self.root = pipe, pathlib.Path(root)
    self.max_batch, self.max_wait = int(max_batch), max_wait_ms / 1000.0
    self.max_queue, self.max_seconds, self.retention = int(max_queue), max_seconds, retention_s
    self.jobs: dict[str, Job] = {}
    self.queue: list[Job] = []
    self.running: list[Job] = []
    self.reserved = 0               # slots taken by requests still uploading / being checked
    self.counts = Counter()
    self.batch_sizes = Counter()    # requests per call -> calls
    self.shapes: dict[tuple, int] = {}   # (chunks, rows, options) -> calls: the buckets run
    self.recent_batch_seconds: list[float] = []
    self._cond = threading.Condition()
    self._stopping = False
    self._numbers = itertools.count()
    self._threads = [threading.Thread(target=self._work, name="talkjax-serve-worker", daemon=True),
                     threading.Thread(target=self._expire, name="talkjax-serve-janitor", daemon=True)]

  # ---- lifecycle ---------------------------------------------------------------------------

  def start(self) -> "Service":
    for t in self._threads:
      t.start()
    return self

  def stop(self) -> None:
    """Stops the threads (the running batch finishes first) and deletes every job's files."""
    with self._cond:
      self._stopping = True
      self._cond.notify_all()
    for t in self._threads:
      if t.is_alive():
        t.join(timeout=600)
    shutil.rmtree(self.root, ignore_errors=True)

  # ---- submitting --------------------------------------------------------------------------

  def reserve(self) -> str:
    """A queue slot and a new job folder for a request about to be uploaded; QueueFull when
    the queue (with the requests being uploaded) is full. Release with `release` on error."""
    with self._cond:
      if self._stopping:
        raise QueueFull(self.retry_after())
      if len(self.queue) + self.reserved >= self.max_queue:
        self.counts["refused_full"] += 1
        raise QueueFull(self.retry_after())
      self.reserved += 1
    job_id = f"{next(self._numbers):06d}-{secrets.token_urlsafe(9)}"
    (self.root / job_id).mkdir(mode=0o700)
    return job_id

  def release(self, job_id: str, *, rejected: bool = False) -> None:
    """Gives a reserved slot back (`rejected`: the request was bad, and is counted)."""
    with self._cond:
      self.reserved -= 1
      self.counts["rejected"] += int(rejected)
    shutil.rmtree(self.root / job_id, ignore_errors=True)

  def submit(self, job_id: str, request: Request) -> Job:
    """Checks a reserved job's request (TalkjaxError: a bad request) and queues it."""
    try:
      prepared = self.pipe.prepare(request)
      if prepared.frames > self.max_seconds * self.pipe.fps:
        raise TooLong(f"the audio is {prepared.frames / self.pipe.fps:.1f} s long; this server "
                      f"takes at most {self.max_seconds:g} s",
                      fix="send a shorter clip (or start the server with a larger --max-seconds)")
    except TalkjaxError:
      self.release(job_id, rejected=True)
      raise
    except Exception:
      self.release(job_id)
      raise
    job = Job(job_id, self.root / job_id, request, prepared=prepared,
              bucket=Pipeline.bucket(prepared), frames=prepared.frames, fps=self.pipe.fps,
              crop=prepared.crop, warnings=list(prepared.warnings))
    with self._cond:
      self.reserved -= 1
      self.jobs[job_id] = job
      self.queue.append(job)
      self.counts["accepted"] += 1
      self._cond.notify_all()
    return job

  def retry_after(self) -> int:
    """Seconds until a slot is likely free: the time the queue ahead takes at the recent rate."""
    recent = self.recent_batch_seconds[-8:]
    per_batch = sum(recent) / len(recent) if recent else 1.0
    batches = max(1, -(-len(self.queue) // self.max_batch))
    return max(1, min(60, round(per_batch * batches)))

  def delete(self, job: Job) -> bool:
    """Forgets a queued or finished job and deletes its files; False while it is running."""
    with self._cond:
      if job.status == "running":
        return False
      if job in self.queue:
        self.queue.remove(job)
      self.jobs.pop(job.id, None)
    shutil.rmtree(job.folder, ignore_errors=True)
    return True

  # ---- reading -----------------------------------------------------------------------------

  def get(self, job_id: str) -> Job | None:
    return self.jobs.get(job_id)

  def status(self, job: Job) -> dict:
    with self._cond:
      position = self.queue.index(job) if job in self.queue else None
    return job.public(queue_position=position, retention=self.retention)

  def health(self) -> dict:
    import jax
    with self._cond:
      return {
          "status": "stopping" if self._stopping else "ok",
          "queue": {"length": len(self.queue), "uploading": self.reserved,
                    "capacity": self.max_queue, "running": len(self.running)},
          "devices": [str(d) for d in self.pipe.sampler.mesh.devices.flat],
          "platform": jax.devices()[0].platform,
          "counters": {**{k: self.counts[k] for k in
                          ("accepted", "rejected", "refused_full", "done", "failed", "batches")},
                       "largest_batch": max(self.batch_sizes, default=0),
                       "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())}},
          "compiled_buckets": [{"chunks": c, "rows": r, "options": o, "calls": n}
                               for (c, r, o), n in sorted(self.shapes.items())],
          "jobs_kept": len(self.jobs),
      }

  # ---- the worker --------------------------------------------------------------------------

  def _next_batch(self) -> list[Job] | None:
    """The oldest job and the jobs of its bucket that arrive within max_wait of it."""
    with self._cond:
      while not self.queue and not self._stopping:
        self._cond.wait()
      if self._stopping:
        return None
      first = self.queue[0]
      deadline = first.created + self.max_wait
      while True:
        same = [j for j in self.queue if j.bucket == first.bucket]
        left = deadline - time.time()
        if len(same) >= self.max_batch or left <= 0 or self._stopping:
          break
        self._cond.wait(left)
      batch = same[:self.max_batch]
      for job in batch:
        self.queue.remove(job)
        job.status = "running"
      self.running = batch
      return batch

  def _work(self) -> None:
    while True:
      batch = self._next_batch()
      if batch is None:
        return
      started = time.time()
      try:
        self._run(batch)
      except Exception as e:   # a broken batch fails its jobs, never the worker
        traceback.print_exc()
        for job in batch:
          if job.status == "running":
            self._finish(job, f"sampling failed ({type(e).__name__}: {e})")
      with self._cond:
        self.running = []
        self.recent_batch_seconds = (self.recent_batch_seconds + [time.time() - started])[-32:]

  def _run(self, batch: list[Job]) -> None:
    rows = batch_rows(len(batch), self.max_batch)
    by_request = {id(job.request): job for job in batch}
    prepared = [job.prepared for job in batch]
    chunks, options = batch[0].bucket
    with self._cond:
      self.counts["batches"] += 1
      self.batch_sizes[len(batch)] += 1
      key = (chunks, rows, repr(options))
      self.shapes[key] = self.shapes.get(key, 0) + 1
    for job in batch:
      job.batch_size = len(batch)

    def sink(result):
      job = by_request[id(result.request)]
      return _Progress(job, ResultWriter(job.video, result.fps, audio=result.audio,
                                         track=result.track))

    for out in self.pipe.sample_batch(prepared, rows, sink):
      job = by_request[id(out.request)]
      if isinstance(out, Failure):
        self._finish(job, out.error)
      else:
        job.warnings = list(out.warnings)
        self._finish(job)

  def _finish(self, job: Job, error: str = "") -> None:
    with self._cond:
      job.status, job.error = ("failed", error) if error else ("done", "")
      job.prepared = None                      # its arrays are not needed any more
      job.finished = time.time()
      self.counts["failed" if error else "done"] += 1

  # ---- retention ---------------------------------------------------------------------------

  def _expire(self) -> None:
    period = max(0.05, min(5.0, self.retention / 4))
    while True:
      with self._cond:
        if self._stopping:
          return
        self._cond.wait(period)
        now = time.time()
        old = [j for j in self.jobs.values()
               if j.finished is not None and now - j.finished >= self.retention]
        for job in old:
          del self.jobs[job.id]
      for job in old:
        shutil.rmtree(job.folder, ignore_errors=True)
