"""A launch as a plan: the files it writes, the environment every host gets, and the commands
it runs in order. `--dry-run` prints the plan and calls nothing; a real launch runs it.

Credentials never reach a file, a log or a printed command: an `--env NAME` without a value
is forwarded from the caller's environment at run time (over ssh's standard input for TPU
VMs, by name to `sky launch --env NAME` for SkyPilot), and everywhere it is shown as
`<NAME from your environment>`.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import threading
import time

from talkjax.errors import TalkjaxError


@dataclasses.dataclass
class Step:
  what: str                                     # one line for the user
  argv: list[str] = dataclasses.field(default_factory=list)
  stdin_env: tuple[str, ...] = ()               # forwarded secrets, written to its stdin
  log: str | None = None                        # stream its output here (and to the terminal)
  prefix: str = ""                              # before each streamed line, e.g. "[worker 3] "
  parallel_group: int | None = None             # steps of one group start together
  poll: tuple[str, ...] = ()                    # repeat until stdout is one of these words
  fail_on: tuple[str, ...] = ()                 # ... and stop if it is one of these
  file: tuple[str, str] | None = None           # (path, text): write a file instead of a command
  explain: tuple[str, str] | None = None        # (what is wrong, fix) when the command fails
  # One copy per host, run together: argv/log/prefix hold "{host}"; `hosts` prints the count
  # (JSON with a list under "networkEndpoints"), read from the machines when the step runs.
  hosts: list[str] | None = None
  expected_hosts: int = 0


@dataclasses.dataclass
class Plan:
  title: str
  summary: list[tuple[str, str]]                # (label, value) lines
  env: dict[str, str]                           # visible values every host gets
  secret_env: tuple[str, ...]                   # names forwarded from the caller's environment
  steps: list[Step]
  teardown: list[Step] = dataclasses.field(default_factory=list)
  teardown_command: str = ""

  def render(self) -> str:
    out = [f"{self.title}: dry run (nothing is created, no cloud API is called)"]
    width = max(len(label) for label, _ in self.summary)
    out += [f"{label:<{width}} : {value}" for label, value in self.summary]
    out.append("environment on every host:")
    out += [f"  {k}={v}" for k, v in self.env.items()]
    out += [f"  {k}=<{k} from your environment>" for k in self.secret_env]
    if not self.env and not self.secret_env:
      out.append("  (nothing beyond the run's own)")
    files = [s.file for s in self.steps if s.file]
    if files:
      out.append("files:")
      for path, text in files:
        out.append(f"  {path}:")
        out += [f"    {line}" for line in text.rstrip("\n").splitlines()]
    out.append("steps:")
    number = 0
    for i, step in enumerate(self.steps):
      if step.file:
        continue
      grouped = step.parallel_group is not None and i and \
          self.steps[i - 1].parallel_group == step.parallel_group
      if not grouped:
        number += 1
        out.append(f"  {number}. {step.what}")
      if step.hosts:
        last = step.expected_hosts - 1
        out.append(f"     $ {' '.join(shlex.quote(a) for a in step.hosts)}")
        out.append(f"       (how many hosts the slice has: {step.expected_hosts} by the Cloud TPU "
                   f"tables; then on each host {{host}} of 0..{last} at once:)")
      out.append(f"     $ {show(step)}")
    if self.teardown:
      out.append(f"teardown ({self.teardown_command}):")
      out += [f"     $ {show(s)}" for s in self.teardown]
    return "\n".join(out)


def show(step: Step) -> str:
  line = " ".join(shlex.quote(a) for a in step.argv)
  if step.stdin_env:
    line += f"   (stdin: {', '.join(step.stdin_env)} from your environment)"
  if step.log:
    line += f"   > {step.log}"
  return line


def split_env(items) -> tuple[dict, tuple]:
  """["A=1", "WANDB_API_KEY"] -> ({"A": "1"}, ("WANDB_API_KEY",))."""
  plain, secret = {}, []
  for item in items or ():
    name, eq, value = item.partition("=")
    if not name.isidentifier():
      raise TalkjaxError(f"--env {item!r}: {name!r} is not a variable name",
                         fix="--env NAME=VALUE, or --env NAME to forward it from your environment")
    if eq:
      plain[name] = value
    else:
      secret.append(name)
  return plain, tuple(secret)


def require_cli(program: str, install: str) -> str:
  path = shutil.which(program)
  if path is None:
    raise TalkjaxError(f"the {program!r} command is not installed (or not on PATH)",
                       fix=f"{install}; or look first with --dry-run")
  return path


def check_secrets(names) -> dict:
  missing = [n for n in names if n not in os.environ]
  if missing:
    raise TalkjaxError(f"--env {' '.join(missing)}: not set in your environment",
                       fix="export it first, or give --env NAME=VALUE for a value that is no secret")
  return {n: os.environ[n] for n in names}


def _stream(proc, log: pathlib.Path | None, prefix: str) -> None:
  handle = open(log, "a") if log else None
  try:
    for line in proc.stdout:
      sys.stdout.write(prefix + line)
      sys.stdout.flush()
      if handle:
        handle.write(line)
        handle.flush()
  finally:
    if handle:
      handle.close()


def _start(step: Step, secrets: dict):
  if step.log:
    pathlib.Path(step.log).parent.mkdir(parents=True, exist_ok=True)
  # A local Python step runs in this interpreter (the plan prints the portable "python3").
  argv = [sys.executable, *step.argv[1:]] if step.argv[0] == "python3" else step.argv
  proc = subprocess.Popen(argv, stdin=subprocess.PIPE if step.stdin_env else None,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  if step.stdin_env:
    proc.stdin.write("".join(f"{secrets[n]}\n" for n in step.stdin_env))
    proc.stdin.close()
  thread = threading.Thread(target=_stream, args=(proc, pathlib.Path(step.log) if step.log
                                                  else None, step.prefix), daemon=True)
  thread.start()
  return proc, thread


def _per_host(step: Step) -> list[Step]:
  import json
  done = subprocess.run(step.hosts, capture_output=True, text=True)
  try:
    count = len(json.loads(done.stdout)["networkEndpoints"]) if done.returncode == 0 else 0
  except (ValueError, KeyError, TypeError):
    count = 0
  if count < 1:
    raise TalkjaxError(f"{step.what}: cannot read the slice's hosts ({done.stderr.strip()[-300:]})",
                       fix="see `gcloud compute tpus tpu-vm describe`; delete the slice with the "
                           "teardown command")
  if count != step.expected_hosts:
    print(f"launch: the slice has {count} hosts (the tables say {step.expected_hosts}); starting "
          f"{count}", file=sys.stderr)
  fill = lambda text, n: text.replace("{host}", str(n)) if text else text
  return [dataclasses.replace(step, argv=[fill(a, n) for a in step.argv], log=fill(step.log, n),
                              prefix=fill(step.prefix, n), hosts=None, parallel_group=-1)
          for n in range(count)]


def _poll(step: Step, interval: float | None = None) -> None:
  interval = float(os.environ.get("TALKJAX_LAUNCH_POLL_S", 30)) if interval is None else interval
  while True:
    done = subprocess.run(step.argv, capture_output=True, text=True)
    state = done.stdout.strip()
    if done.returncode != 0:
      raise TalkjaxError(f"{step.what}: {' '.join(step.argv[:4])} ... failed: "
                         f"{done.stderr.strip()[-300:]}")
    if state in step.fail_on:
      raise TalkjaxError(f"{step.what}: the request is {state}",
                         fix="see `gcloud compute tpus queued-resources describe`; delete it "
                             "with the teardown command")
    if state in step.poll:
      return
    print(f"  ... {state or 'not yet listed'}; waiting", file=sys.stderr)
    time.sleep(interval)


def execute(plan: Plan, steps: list[Step] | None = None) -> int:
  """Runs the steps in order (a parallel group together); stops at the first failure."""
  steps = plan.steps if steps is None else steps
  secrets = check_secrets(plan.secret_env)
  i = 0
  while i < len(steps):
    step = steps[i]
    if step.file:
      path, text = step.file
      pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
      pathlib.Path(path).write_text(text)
      i += 1
      continue
    if step.hosts:
      steps = steps[:i] + _per_host(step) + steps[i + 1:]
      step = steps[i]
    group = [step]
    while step.parallel_group is not None and i + len(group) < len(steps) and \
        steps[i + len(group)].parallel_group == step.parallel_group:
      group.append(steps[i + len(group)])
    print(f"launch: {step.what}", file=sys.stderr)
    if step.poll:
      _poll(step)
    else:
      running = [_start(s, secrets) for s in group]
      codes = []
      for proc, thread in running:
        codes.append(proc.wait())
        thread.join()
      bad = [(s, c) for s, c in zip(group, codes) if c != 0]
      if bad:
        s, code = bad[0]
        if s.explain:
          raise TalkjaxError(s.explain[0], fix=s.explain[1])
        print(f"launch: failed ({code}): {show(s)}", file=sys.stderr)
        return code
    i += len(group)
  return 0
