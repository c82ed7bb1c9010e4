"""Runs many `improve-nas` command lines cheaply (either engine, with the
interpreter of its environment): one process imports the command (and
TensorFlow) once, then forks a fresh child per command line; each
child parses its own flags and runs the real `trainer.main.run()`, with
stdout and stderr captured and its exit status collected.

    python tests/cli_battery.py CASES.json RESULTS.json

CASES.json: [{"argv": [...], "user": "nobody"?, "env": {...}?,
"max_file_bytes": N?}, ...];
RESULTS.json: [{"returncode": int, "stdout": str, "stderr": str}, ...]. With
"user", a child started as root runs as that user, so permissions apply to
it; "env" adds environment variables to the child's; "max_file_bytes" keeps
the child from growing any file past N bytes (its writes then fail as on a
full disk, with EFBIG).
"""

import json
import os
import pwd
import resource
import signal
import sys
import tempfile
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from trainer import main as trainer_main  # noqa: E402  pylint: disable=g-import-not-at-top
import forkserver  # noqa: E402  pylint: disable=g-import-not-at-top
# What the command imports when it runs, loaded once here before the
# children fork (it is lazy in the command): each case then starts at
# once, and one that runs as another user needs no file of the checkout.
forkserver.preload()


def _run_case(case, out_path, err_path):
  pid = os.fork()
  if pid == 0:  # the child: a whole command-line run
    code = 70
    try:
      with open(out_path, "w") as out, open(err_path, "w") as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
      try:
        if case.get("user") and os.geteuid() == 0:
          user = pwd.getpwnam(case["user"])
          os.setgid(user.pw_gid)
          os.setuid(user.pw_uid)
        os.environ.update(case.get("env") or {})
        if case.get("max_file_bytes"):
          limit = case["max_file_bytes"]
          signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write
          resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        sys.argv = ["improve-nas", *case["argv"]]
        trainer_main.run()
        code = 0
      except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None
                                                       else 1)
      except Exception:  # pylint: disable=broad-except
        traceback.print_exc()  # a crash: exit status 70 and the traceback
    finally:
      sys.stdout.flush()
      sys.stderr.flush()
      os._exit(code)  # pylint: disable=protected-access
  _, status = os.waitpid(pid, 0)
  with open(out_path) as out, open(err_path) as err:
    return {"returncode": os.waitstatus_to_exitcode(status),
            "stdout": out.read(), "stderr": err.read()}


def main(cases_path, results_path):
  with open(cases_path) as f:
    cases = json.load(f)
  results = []
  with tempfile.TemporaryDirectory() as scratch:
    for i, case in enumerate(cases):
      results.append(_run_case(case, os.path.join(scratch, f"{i}.out"),
                               os.path.join(scratch, f"{i}.err")))
  with open(results_path, "w") as f:
    json.dump(results, f)


if __name__ == "__main__":
  main(*sys.argv[1:])
