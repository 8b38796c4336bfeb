"""Start N JAX processes on this machine, as a TPU pod or GPU cluster would.

Each process gets D fake CPU devices, the coordinator address, the process count and its
id (read by talkjax.parallel.initialize_distributed), and its own log file. If any process
fails, the others are stopped and the launch exits with that process's status, printing the
end of its log.

  python -m talkjax_launch.local --processes 2 --devices-per-process 2 -- \
      talkjax train --config testbed/tiny --workdir /tmp/tb-2x2
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shlex
import signal
import socket
import subprocess
import sys
import time

from talkjax.parallel import ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def process_env(base: dict, index: int, count: int, devices: int, port: int) -> dict:
  env = dict(base)
  flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", ""))
  env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
  env["JAX_PLATFORMS"] = "cpu"
  env[ENV_COORDINATOR] = f"127.0.0.1:{port}"
  env[ENV_NUM_PROCESSES] = str(count)
  env[ENV_PROCESS_ID] = str(index)
  return env


def tail(path: pathlib.Path, lines: int = 20) -> str:
  text = path.read_text(errors="replace").replace("\r", "\n")  # progress bars use \r
  return "\n".join([l for l in text.splitlines() if l.strip()][-lines:])


def launch(command: list[str], processes: int, devices_per_process: int, log_dir: pathlib.Path,
           timeout: float | None = None) -> int:
  if not command:
    raise SystemExit("launch: give the command to run after --")
  log_dir.mkdir(parents=True, exist_ok=True)
  port = free_port()
  procs, logs = [], []
  for i in range(processes):
    log = log_dir / f"process_{i}.log"
    logs.append(log)
    with open(log, "w") as f:
      procs.append(subprocess.Popen(
          command, stdout=f, stderr=subprocess.STDOUT,
          env=process_env(os.environ, i, processes, devices_per_process, port)))

  def stop_all(*_):
    for p in procs:
      if p.poll() is None:
        p.terminate()

  previous = signal.signal(signal.SIGTERM, stop_all)  # preemption reaches every process
  start = time.monotonic()
  failed = None
  try:
    while any(p.poll() is None for p in procs):
      for i, p in enumerate(procs):
        if p.poll() not in (None, 0) and failed is None:
          failed = i
          stop_all()
      if timeout is not None and time.monotonic() - start > timeout:
        stop_all()
        failed = failed if failed is not None else -1
      time.sleep(0.2)
  except KeyboardInterrupt:
    stop_all()
    raise
  finally:
    signal.signal(signal.SIGTERM, previous)
    for p in procs:
      p.wait()
  if failed is None:
    failed = next((i for i, p in enumerate(procs) if p.returncode != 0), None)
  if failed is None:
    print(f"launch: {processes} processes finished; logs in {log_dir}", file=sys.stderr)
    return 0
  if failed == -1:
    print(f"launch: timed out after {timeout} s; logs in {log_dir}", file=sys.stderr)
    return 124
  code = procs[failed].returncode
  print(f"launch: process {failed} failed with status {code}; its log ({logs[failed]}) ends:\n"
        f"{tail(logs[failed])}", file=sys.stderr)
  return code if code > 0 else 1


def render(command: list[str], processes: int, devices_per_process: int,
           log_dir: pathlib.Path) -> str:
  """What `launch` would start: each process's command, environment and log (--dry-run)."""
  if not command:
    raise SystemExit("launch: give the command to run after --")
  lines = [f"talkjax launch local: dry run ({processes} processes x {devices_per_process} "
           "fake CPU device(s); the coordinator port is picked when it starts)"]
  for i in range(processes):
    env = process_env({}, i, processes, devices_per_process, 0)
    env[ENV_COORDINATOR] = "127.0.0.1:<free port>"
    shown = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    lines.append(f"  process {i}: {shown} {' '.join(shlex.quote(c) for c in command)}"
                 f"   > {log_dir / f'process_{i}.log'}")
  return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--processes", type=int, default=2, help="JAX processes to start")
  parser.add_argument("--devices-per-process", type=int, default=1,
                      help="fake CPU devices each process sees")
  parser.add_argument("--log-dir", default="launch-logs", help="one log file per process")
  parser.add_argument("--timeout", type=float, default=None, help="stop everything after S seconds")
  parser.add_argument("--dry-run", action="store_true",
                      help="print each process's command, environment and log; start nothing")
  parser.add_argument("cmd", nargs=argparse.REMAINDER, help="-- then the command each process runs")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  add_arguments(parser)
  args = parser.parse_args(argv)
  cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
  if args.dry_run:
    print(render(cmd, args.processes, args.devices_per_process, pathlib.Path(args.log_dir)))
    return 0
  return launch(cmd, args.processes, args.devices_per_process, pathlib.Path(args.log_dir),
                args.timeout)


if __name__ == "__main__":
  sys.exit(main())
