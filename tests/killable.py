"""A command the tests start and may interrupt: `until(pattern=..., path=...)`
sends a signal when a line of its output matches or a path exists (or a
function of the process says so), then waits for it to end. Also
`run_battery`, many command lines in one process (cli_battery.py). Used by
both suites (tests/ and tests_keras/); it imports nothing of improve_nas.

Every process is killed by the test that started it, pass or fail.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading

import forkserver


class Process:
  """`argv` run in `cwd`; with `merge_stderr` its stderr is part of the
  lines `pattern` is matched against."""

  def __init__(self, argv, cwd, env, merge_stderr=True):
    self.proc = forkserver.Popen(  # `python -m` commands: forked
        argv, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE)
    self.lines = []
    self.stderr = ""
    self.signalled = False

  def until(self, pattern=None, sig=signal.SIGKILL, timeout=400, path=None):
    """`path`: instead of a pattern, signal as soon as this path exists, or
    (a function of this Process) as soon as it returns True."""
    watchdog = threading.Timer(timeout, self.proc.kill)
    watchdog.start()
    done = threading.Event()

    def due():
      return path(self) if callable(path) else os.path.exists(path)

    def watch():
      while not done.wait(0.005):
        if due():
          self.proc.send_signal(sig)
          self.signalled = True
          return

    if path:
      threading.Thread(target=watch, daemon=True).start()
    try:
      for line in self.proc.stdout:
        self.lines.append(line)
        if pattern and not self.signalled and re.search(pattern, line):
          self.proc.send_signal(sig)
          self.signalled = True
      self.proc.wait()
      if self.proc.stderr is not None:
        self.stderr = self.proc.stderr.read()
    finally:
      done.set()
      watchdog.cancel()
      if self.proc.poll() is None:
        self.proc.kill()
        self.proc.wait()
    assert not (pattern or path) or self.signalled, (
        f"{pattern or path!r} never appeared:\n{self.output[-3000:]}")
    return self

  @property
  def output(self):
    return "".join(self.lines) + self.stderr

  @property
  def returncode(self):
    return self.proc.returncode


def run_battery(cases, folder, root, timeout=900):
  """The results ({"returncode", "stdout", "stderr"}) of tests/cli_battery.py
  run on `cases` (its CASES.json entries) with this interpreter, from the
  checkout `root`; its files go in `folder` (a pathlib.Path)."""
  cases_path, results_path = folder / "cases.json", folder / "results.json"
  cases_path.write_text(json.dumps(cases))
  proc = subprocess.run(
      [sys.executable, os.path.join(root, "tests", "cli_battery.py"),
       str(cases_path), str(results_path)], cwd=root, capture_output=True,
      text=True, timeout=timeout,
      env=dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="2"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(results_path.read_text())


def add_slow_option(parser):
  """Adds --runslow once: pytest started at the repository root without
  paths (`pytest --version`) loads both suites' conftest.py."""
  try:
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run tests marked slow")
  except ValueError:  # the other suite's conftest.py added it
    pass


def register_slow_marker(config):
  config.addinivalue_line("markers", "slow: a slow test, run with --runslow")


def skip_slow_unless_asked(config, items):
  """Marks the tests marked slow skipped, unless --runslow."""
  if config.getoption("--runslow"):
    return
  import pytest  # pylint: disable=g-import-not-at-top
  skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
  for item in items:
    if "slow" in item.keywords:
      item.add_marker(skip_slow)


def longest_modules_first(items, longest):
  """Puts the tests of the modules named in `longest` (file names, longest
  first) before the others, which keep their order. `make test` gives
  whole modules to pytest-xdist's workers in this order: a long module
  handed out last would run on alone while the other cores sit idle."""
  rank = {name: i for i, name in enumerate(longest)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
