"""The HTTP API of `talkjax serve` (Starlette, run by uvicorn); see talkjax/serve/README.md.

Starlette rather than FastAPI: the request checks that matter are the pipeline's own (the
real-inputs checks, the family's options), so a schema layer would only repeat them, and
Starlette plus python-multipart is all the API needs. Every mistake in a request is a 4xx
with {"error": one line}; nothing a client sends reaches the worker unchecked.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
import pathlib
import re
import time
from importlib import resources

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as HttpRequest
from starlette.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.routing import Route

from talkjax.errors import TalkjaxError
from talkjax.pipelines.pipeline import Request
from talkjax.serve.jobs import QueueFull, Service, TooLong

FILES = ("image", "audio", "partner_audio", "style_video")
FIELDS = {"emotion", "seed", "options", "name"}
MAX_FIELD_BYTES = 64 * 1024
MAX_WAIT_S = 60.0       # longest long-poll of GET /jobs/ID?wait=S


class BadRequest(Exception):
  def __init__(self, status: int, message: str, headers: dict | None = None):
    super().__init__(message)
    self.status, self.message, self.headers = status, message, headers or {}


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
  return JSONResponse({"error": message}, status_code=status, headers=headers)


def _suffix(filename: str | None) -> str:
  """The upload's extension when it is a plain one (the decoders also sniff the content)."""
  suffix = pathlib.PurePath(filename or "").suffix.lower()
  return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ""


def make_app(service: Service, *, max_upload_bytes: int = 32 * 2**20,
             preparing: int = 2) -> Starlette:
  """`preparing`: requests checked at once (decoding and face detection take host memory
  and cores the worker also needs)."""
  limiter = anyio.CapacityLimiter(preparing)
  pipe = service.pipe

  async def form_of(request: HttpRequest, files: tuple[str, ...]):
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
      raise BadRequest(411, "the request has no Content-Length; send the form in one body")
    if int(length) > max_upload_bytes:
      raise BadRequest(413, f"the request is {int(length) / 2**20:.1f} MB; this server takes "
                            f"at most {max_upload_bytes / 2**20:.1f} MB")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
      raise BadRequest(415, "send the request as multipart/form-data (fields: "
                            f"{', '.join(files)} as files)")
    try:
      form = await request.form(max_files=len(files), max_fields=len(FIELDS),
                                max_part_size=MAX_FIELD_BYTES)
    except HTTPException as e:   # the multipart parser's own limits and syntax errors
      raise BadRequest(400, f"the form cannot be read: {e.detail}") from None
    unknown = sorted(set(form) - set(files) - FIELDS)
    if unknown:
      raise BadRequest(400, f"unknown field(s) {unknown}; the fields are "
                            f"{sorted(set(files) | FIELDS)}")
    return form

  async def save(form, field: str, folder: pathlib.Path, required: bool):
    upload = form.get(field)
    if upload is None or upload == "":
      if required:
        raise BadRequest(400, f"the {field.replace('_', ' ')} file is missing (form field "
                              f"{field!r})")
      return None
    if isinstance(upload, str):
      raise BadRequest(400, f"{field!r} must be a file upload, not a text field")
    data = await upload.read()
    if not data:
      raise BadRequest(400, f"the uploaded {field.replace('_', ' ')} file "
                            f"{upload.filename!r} is empty")
    path = folder / f"{field}{_suffix(upload.filename)}"
    path.write_bytes(data)
    shown[str(path)] = f"the uploaded {field.replace('_', ' ')} {upload.filename!r}"
    return str(path)

  # Messages name the uploaded file, never the server's private folder.
  shown: dict[str, str] = {}

  def public(message: str) -> str:
    for path, words in list(shown.items()):
      if path in message:
        message = message.replace(f"'{path}'", "it").replace(path, words)
    return message

  def forget(folder: pathlib.Path) -> None:
    for path in [p for p in shown if p.startswith(str(folder))]:
      del shown[path]

  def parse_request(form, paths: dict) -> Request:
    seed = form.get("seed", "0") or "0"
    if not re.fullmatch(r"\d{1,10}", str(seed)):
      raise BadRequest(400, f"seed {seed!r} must be a whole number in 0..{2**32 - 1}")
    options = form.get("options") or "{}"
    try:
      options = json.loads(options)
    except json.JSONDecodeError as e:
      raise BadRequest(400, f"options must be a JSON object ({e})") from None
    if not isinstance(options, dict):
      raise BadRequest(400, 'options must be a JSON object, e.g. {"steps": 10}')
    name = str(form.get("name") or "")[:64]
    return Request(paths["image"], paths["audio"], paths.get("partner_audio"),
                   form.get("emotion") or None, int(seed), knobs=options,
                   name=re.sub(r"[^\w.-]", "_", name), style_video=paths.get("style_video"))

  async def submit(request: HttpRequest):
    try:
      job_id = service.reserve()
    except QueueFull as e:
      return _error(503, str(e), {"Retry-After": str(e.retry_after)})
    folder = service.root / job_id
    try:
      form = await form_of(request, FILES)
      paths = {f: await save(form, f, folder, required=f in ("image", "audio")) for f in FILES}
      r = parse_request(form, {k: v for k, v in paths.items() if v is not None})
      r.name = r.name or job_id
    except BadRequest as e:
      service.release(job_id, rejected=True)
      forget(folder)
      return _error(e.status, e.message, e.headers)
    except BaseException:
      service.release(job_id)
      forget(folder)
      raise
    try:   # submit releases the slot itself when the request is refused
      job = await anyio.to_thread.run_sync(service.submit, job_id, r, limiter=limiter)
    except TooLong as e:
      return _error(413, public(e.one_line()))
    except TalkjaxError as e:
      return _error(400, public(e.one_line()))
    finally:
      forget(folder)
    return JSONResponse(service.status(job), status_code=202,
                        headers={"Location": f"/jobs/{job.id}"})

  def job_or_404(request: HttpRequest):
    job = service.get(request.path_params["job_id"])
    if job is None:
      raise BadRequest(404, "no such job (finished jobs are kept for "
                            f"{service.retention:g} s)")
    return job

  async def status(request: HttpRequest):
    """`?wait=S`: answers when the job has finished or after S seconds (at most 60), so a
    client waiting for its video need not poll."""
    job = job_or_404(request)
    wait = request.query_params.get("wait")
    if wait is not None:
      try:
        deadline = time.monotonic() + min(max(float(wait), 0.0), MAX_WAIT_S)
      except ValueError:
        raise BadRequest(400, f"wait={wait!r} must be a number of seconds") from None
      while job.status in ("queued", "running") and time.monotonic() < deadline:
        await anyio.sleep(0.02)
    return JSONResponse(service.status(job))

  async def video(request: HttpRequest):
    job = job_or_404(request)
    if job.status != "done":
      message = job.error if job.status == "failed" else f"the job is {job.status}"
      return _error(409, f"no video: {message}")
    return FileResponse(job.video, media_type="video/mp4",
                        filename=f"{job.request.name or job.id}.mp4")

  async def delete(request: HttpRequest):
    job = job_or_404(request)
    if not service.delete(job):
      return _error(409, "the job is being sampled; delete it when it has finished")
    return JSONResponse({"deleted": job.id})

  async def preview(request: HttpRequest):
    """The square the model will see, for the page's crop preview."""
    form = await form_of(request, ("image",))
    folder = service.root / "previews"
    folder.mkdir(mode=0o700, exist_ok=True)
    upload = form.get("image")
    if upload is None or isinstance(upload, str):
      raise BadRequest(400, "the image file is missing (form field 'image')")
    path = folder / f"{id(upload)}{_suffix(upload.filename)}"
    path.write_bytes(await upload.read())
    try:
      image, crop, notes = await anyio.to_thread.run_sync(pipe.portrait, str(path),
                                                          limiter=limiter)
    except TalkjaxError as e:
      message = e.one_line().replace(f"'{path}'", "it")
      raise BadRequest(400, message.replace(str(path), f"the uploaded image {upload.filename!r}")) \
          from None
    finally:
      path.unlink(missing_ok=True)
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(image).resize((256, 256), Image.BILINEAR).save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode()
    return JSONResponse({"crop": crop, "warnings": notes, "image": f"data:image/png;base64,{data}"})

  async def info(request: HttpRequest):
    return JSONResponse(describe(service, max_upload_bytes))

  async def health(request: HttpRequest):
    return JSONResponse(service.health())

  async def page(request: HttpRequest):
    return HTMLResponse(resources.files("talkjax.serve").joinpath("page.html").read_text())

  async def bad_request(request, e: BadRequest):
    return _error(e.status, e.message, e.headers)

  async def http_error(request, e: HTTPException):
    return _error(e.status_code, str(e.detail))

  async def internal_error(request, e: Exception):
    # A bug, not the client's mistake: still one JSON line, and the server goes on.
    import traceback
    traceback.print_exception(e)
    return _error(500, f"internal error ({type(e).__name__}: {e}); the server goes on")

  @contextlib.asynccontextmanager
  async def lifespan(app):
    service.start()
    try:
      yield
    finally:
      await anyio.to_thread.run_sync(service.stop)

  routes = [Route("/", page), Route("/info", info), Route("/health", health),
            Route("/preview", preview, methods=["POST"]),
            Route("/jobs", submit, methods=["POST"]),
            Route("/jobs/{job_id}", status), Route("/jobs/{job_id}", delete, methods=["DELETE"]),
            Route("/jobs/{job_id}/video", video)]
  return Starlette(routes=routes, lifespan=lifespan,
                   exception_handlers={BadRequest: bad_request, HTTPException: http_error,
                                       Exception: internal_error})


def describe(service: Service, max_upload_bytes: int) -> dict:
  """What the page needs to build its form: the loaded family's inputs and options."""
  sampler = service.pipe.sampler
  knobs = sampler.knobs()
  kinds = {bool: "bool", int: "int", float: "float", str: "str"}
  options = [{"name": f.name, "default": getattr(knobs, f.name),
              "type": kinds.get(type(getattr(knobs, f.name)), "str"),
              **({"choices": list(knobs.CHOICES[f.name])} if f.name in knobs.CHOICES else {})}
             for f in dataclasses.fields(knobs)]
  return {"family": sampler.hook.config.family, "fps": sampler.fps,
          "resolution": sampler.resolution, "window": sampler.window,
          "accepts": sorted(sampler.accepts), "requires": sorted(sampler.requires),
          "emotions": list(getattr(sampler.hook, "emotions", ())), "options": options,
          "crop": service.pipe.crop,
          "limits": {"max_upload_bytes": max_upload_bytes, "max_seconds": service.max_seconds,
                     "max_batch": service.max_batch, "max_wait_ms": service.max_wait * 1000,
                     "max_queue": service.max_queue, "retention_s": service.retention}}
