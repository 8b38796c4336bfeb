"""Building the service and running it under uvicorn (blocking, or in a background thread).

```python
from talkjax.serve.server import build_service, running
service = build_service("runs/ifmdm_tiny_stage2", max_batch=8)
with running(service, port=0) as url:     # a free loopback port
    ...                                   # e.g. httpx.post(f"{url}/jobs", files=...)
```
"""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import socket
import sys
import tempfile
import threading
import time

from talkjax.errors import TalkjaxError
from talkjax.serve.app import make_app
from talkjax.serve.jobs import Service


def build_service(checkpoint, *, crop: str = "auto", mesh=None, separator=None,
                  **limits) -> Service:
  """The model from `checkpoint` behind a job queue; `limits`: Service's keyword arguments.
  Job files live in a new private (0700) temporary folder, deleted when the service stops."""
  from talkjax.pipelines.pipeline import Pipeline
  pipe = Pipeline.load(checkpoint, crop=crop, mesh=mesh, separator=separator,
                       batch_size=limits.get("max_batch", 8))
  return Service(pipe, tempfile.mkdtemp(prefix="talkjax-serve-"), **limits)


def is_loopback(host: str) -> bool:
  if host == "localhost":
    return True
  try:
    return ipaddress.ip_address(host).is_loopback
  except ValueError:
    return False


def _server(service: Service, host: str, port: int, max_upload_bytes: int, log_level: str,
            configure_logging: bool = True):
  import uvicorn
  app = make_app(service, max_upload_bytes=max_upload_bytes)
  # In a thread of someone else's program, leave its logging alone (uvicorn's own setup
  # would bind handlers to whatever sys.stderr is at that moment).
  extra = {} if configure_logging else {"log_config": None}
  config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on",
                          timeout_graceful_shutdown=5, **extra)
  return uvicorn.Server(config)


def serve(service: Service, host: str = "127.0.0.1", port: int = 8000, *,
          max_upload_bytes: int = 32 * 2**20, log_level: str = "info") -> None:
  """Serves until interrupted (Ctrl-C); the service's files are deleted on the way out."""
  try:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
      probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
      probe.bind((host, port))
  except OSError as e:
    service.stop()
    raise TalkjaxError(f"cannot listen on {host}:{port} ({e.strerror})",
                       fix="pick another --port, or stop what is using it") from None
  # The server runs in a thread (so uvicorn leaves the signals to us) and Ctrl-C here stops
  # it: requests finish, the worker ends its batch, the files go.
  def stop(signum, frame):
    raise KeyboardInterrupt
  previous = signal.signal(signal.SIGTERM, stop)   # a service manager's stop: the same
  try:
    with running(service, host, port, max_upload_bytes=max_upload_bytes, log_level=log_level,
                 configure_logging=True):
      threading.Event().wait()
  except KeyboardInterrupt:   # also while it was still starting: `running` cleans up either way
    print("talkjax serve: stopping", file=sys.stderr)
  finally:
    signal.signal(signal.SIGTERM, previous)
    service.stop()   # already done at the server's shutdown; here too if it never started


@contextlib.contextmanager
def running(service: Service, host: str = "127.0.0.1", port: int = 0, *,
            max_upload_bytes: int = 32 * 2**20, log_level: str = "warning",
            configure_logging: bool = False):
  """The server in a background thread for the `with` block; yields its base URL."""
  server = _server(service, host, port, max_upload_bytes, log_level, configure_logging)
  thread = threading.Thread(target=server.run, name="talkjax-serve-http", daemon=True)
  thread.start()
  try:
    deadline = time.time() + 60
    while not server.started:
      if not thread.is_alive() or time.time() > deadline:
        raise TalkjaxError(f"the server did not start on {host}:{port}")
      time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://{host}:{bound}"
  finally:
    server.should_exit = True
    thread.join(timeout=60)
