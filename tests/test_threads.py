"""TensorFlow's threads as improve_nas sets them (improve_nas/threads.py):
one per operation and as many operations at once as cores, unless the
environment says otherwise or TensorFlow has already run something."""

import json
import os
import subprocess
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHILD = """
import json, os, sys
from improve_nas import threads
import tensorflow as tf
if sys.argv[1] == "after_an_operation":
  tf.constant(1.0) + 1.0
set_now = threads.configure()
config = tf.compat.v1.ConfigProto()
threads.session_threads(config)
print(json.dumps({
    "set": set_now,
    "intra": tf.config.threading.get_intra_op_parallelism_threads(),
    "inter": tf.config.threading.get_inter_op_parallelism_threads(),
    "session": [config.intra_op_parallelism_threads,
                config.inter_op_parallelism_threads],
    "cpus": os.cpu_count()}))
"""


def _threads(case, **env):
  clean = {k: v for k, v in os.environ.items()
           if k not in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")}
  proc = subprocess.run(
      [sys.executable, "-c", _CHILD, case], capture_output=True, text=True,
      timeout=120, cwd=_ROOT,
      env=dict(clean, PYTHONPATH=_ROOT, TF_CPP_MIN_LOG_LEVEL="2", **env))
  assert proc.returncode == 0, proc.stderr[-2000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_one_thread_per_operation_and_an_operation_per_core():
  got = _threads("fresh")
  assert got["set"] is True
  assert (got["intra"], got["inter"]) == (1, got["cpus"])
  assert got["session"] == [1, got["cpus"]]


@pytest.mark.parametrize("variable", ["TF_NUM_INTRAOP_THREADS",
                                      "TF_NUM_INTEROP_THREADS"])
def test_the_environment_keeps_tensorflows_own_threads(variable):
  got = _threads("fresh", **{variable: "0"})
  assert got["set"] is False
  assert (got["intra"], got["inter"]) == (0, 0)
  assert got["session"] == [0, 0]


def test_too_late_once_tensorflow_has_run_an_operation():
  got = _threads("after_an_operation")
  assert got["set"] is False
  assert (got["intra"], got["inter"]) == (0, 0)
