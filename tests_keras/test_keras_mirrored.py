"""Several devices on one machine: the Keras engine under MirroredStrategy,
on 2 logical CPU devices (a process of its own: devices are fixed once
TensorFlow has started)."""

import json
import os
import subprocess
import sys

from keras_run import ROOT, STEPS

_SEARCH = """
import json, sys
import numpy as np
import improve_nas
from improve_nas import mirrored
from improve_nas.configs import demo
from improve_nas.keras_engine import runtime, search
runtime.configure()
strategy = mirrored.strategy(2)
c = demo.get_config()
c.initial_arch, c.image_size, c.batch_size = "1@24", 8, 8
c.max_iterations, c.steps_per_iteration = 2, int(sys.argv[2])
c.selection_steps, c.eval_steps, c.save_summary_steps = 2, 2, 2
c.aux_head_bottleneck, c.aux_head_filters = 8, 16
result = search.run_search(c, sys.argv[1], strategy=strategy)
copies = [[v.value.values for v in m.tower.trainable_variables]
          for m in result.members]
print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "devices": sorted({c.device for m in copies for v in m for c in v}),
    "in_sync": all(np.array_equal(v[0].numpy(), v[1].numpy())
                   for m in copies for v in m),
    "moved": bool(np.any(copies[0][0][0].numpy() != 0)),
    "statistics_in_sync": all(
        np.array_equal(v.value.values[0].numpy(), v.value.values[1].numpy())
        for m in result.members for v in m.tower.non_trainable_variables),
    "statistics_moved": any(
        np.any(v.value.values[0].numpy() != 0) for m in result.members
        for v in m.tower.non_trainable_variables if "moving_mean" in v.path),
    "records": [r.iteration for r in result.records],
    "losses": [x.selection_loss for r in result.records
               for x in r.candidates]}))
"""


def test_replicas_train_one_ensemble_in_step(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-c", _SEARCH, str(tmp_path / "run"), str(STEPS)],
      cwd=ROOT, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, PYTHONPATH=ROOT))
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["replicas"] == 2
  assert len(out["devices"]) == 2 and all("CPU" in d for d in out["devices"])
  # The summed gradients made the same update on both copies.
  assert out["in_sync"] and out["moved"]
  # Each replica normalized its own share; the batch-norm statistics are
  # averaged over them, so every copy holds the same.
  assert out["statistics_in_sync"] and out["statistics_moved"]
  assert out["records"] == [0, 1]
  assert all(0 < x < 10 for x in out["losses"])
