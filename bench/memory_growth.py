"""Does a long search's memory grow beyond what each iteration needs?

    .venv/bin/python bench/memory_growth.py [--iterations=N] [--steps=S] \
        [--config.FIELD=VALUE ...]

Every AdaNet iteration needs more memory than the one before: its graphs
hold every frozen member of the ensemble (their variables, operations,
savers and activations) next to the new candidates. What an iteration needs
is measured here directly, by running it alone: the search is run one
iteration per fresh process on one model_dir (each process resumes from the
previous one's checkpoint, does adanet's bookkeeping, trains the next
iteration and evaluates it, then exits), and the peak resident memory of
each process is what that iteration needs with nothing left from earlier
ones. The same search then runs in this one process, as `improve-nas` runs
it, and its peak up to each iteration is compared.

Prints one JSON object. `growth_beyond_need_mb[i]` is how much more the
long-running search grew into iteration i+2 than iteration i+2 needs more
than iteration i+1; near 0 means nothing of earlier iterations accumulates.
`excess_over_fresh_mb` is the search's peak minus the fresh process's peak.
Both measure peaks with getrusage (the kernel's high-water mark). Defaults:
the demo config as `make demo` runs it.
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
from ml_collections import config_flags

import improve_nas
from improve_nas import search
from improve_nas.verbosity import set_tf_verbosity

import psutil  # pylint: disable=g-bad-import-order
from rss_sampler import MB  # pylint: disable=g-bad-import-order

config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(improve_nas.__file__), "configs",
                           "demo.py"), "Config of the search.")
flags.DEFINE_integer("iterations", None, "Iterations (default: the config's "
                     "max_iterations).")
flags.DEFINE_integer("steps", None, "Training steps per iteration (default: "
                     "the config's steps_per_iteration).")
flags.DEFINE_integer("resume_to", 0, "Internal: resume the search in "
                     "--run_dir up to this many iterations, print the "
                     "process's peak resident memory and exit.")
flags.DEFINE_string("run_dir", "", "Internal: model_dir of --resume_to.")


def _peak_mb() -> float:
  # ru_maxrss is in KiB on Linux.
  return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def _config():
  f = flags.FLAGS
  c = f.config
  if f.iterations:
    c.max_iterations = f.iterations
  if f.steps:
    c.steps_per_iteration = f.steps
  return c


def _fresh_peaks(iterations: int, run_dir: str):
  """Each iteration in its own process, resuming on `run_dir`."""
  peaks, ensemble = [], None
  for k in range(1, iterations + 1):
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), *sys.argv[1:],
         f"--resume_to={k}", f"--run_dir={run_dir}"],
        check=True, capture_output=True, text=True).stdout
    line = json.loads(out.strip().splitlines()[-1])
    peaks.append(line["peak_rss_mb"])
    ensemble = line["ensemble"]
  return peaks, ensemble


def _diffs(values):
  return [round(b - a, 1) for a, b in zip(values, values[1:])]


def main(argv):
  del argv
  f = flags.FLAGS
  set_tf_verbosity(False)
  logging.set_verbosity(logging.WARNING)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  c = _config()
  if f.resume_to:
    c.max_iterations = f.resume_to
    records = search.run_search(c, f.run_dir).records
    assert len(records) == f.resume_to, records
    print(json.dumps({"peak_rss_mb": _peak_mb(),
                      "ensemble": records[-1].ensemble_archs}))
    return

  with tempfile.TemporaryDirectory() as tmp:
    start = time.time()
    fresh, fresh_ensemble = _fresh_peaks(c.max_iterations, os.path.join(tmp, "fresh"))
    fresh_seconds = time.time() - start
    peaks, after = [], []

    def iteration_done(record):
      del record
      peaks.append(_peak_mb())
      after.append(round(psutil.Process().memory_info().rss / MB, 1))

    start = time.time()
    result = search.run_search(c, os.path.join(tmp, "search"),
                               on_iteration=iteration_done)
    seconds = time.time() - start
  need, growth = _diffs(fresh), _diffs(peaks)
  print(json.dumps({
      "benchmark": "memory_growth",
      "cpu_count": os.cpu_count(),
      "generator": c.generator,
      "initial_arch": c.initial_arch,
      "iterations": len(result.records),
      "steps_per_iteration": c.steps_per_iteration,
      "final_ensemble": result.records[-1].ensemble_archs,
      # The same search, so the same members, unless resuming changed it.
      "fresh_processes_final_ensemble": fresh_ensemble,
      "fresh_process_peak_mb": fresh,
      "search_peak_mb": peaks,
      "search_rss_after_iteration_mb": after,
      "need_growth_mb": need,
      "search_growth_mb": growth,
      "growth_beyond_need_mb": [round(g - n, 1)
                                for g, n in zip(growth, need)],
      "excess_over_fresh_mb": [round(p - q, 1) for p, q in zip(peaks, fresh)],
      "search_seconds": round(seconds, 1),
      "fresh_processes_seconds": round(fresh_seconds, 1),
  }))


if __name__ == "__main__":
  app.run(main)
