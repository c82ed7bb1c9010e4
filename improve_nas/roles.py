"""What each task of a TF_CONFIG cluster runs (the chief runs
`search.run_search` as a single process would; see tf_config.py for the
cluster facts).

* worker: trains (`train_worker`); adanet makes it wait at each iteration
  boundary until the chief has prepared the next iteration.
* ps: holds variables (`serve_parameters`, never returns).
* evaluator: evaluates every new checkpoint on the eval split
  (`evaluate_checkpoints`) until the search is over.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Optional

import tensorflow as tf

from improve_nas import growth
from improve_nas.records import DamagedFile, load_search
from improve_nas.search import Search
from improve_nas.tf_config import ClusterTask, start_server

__all__ = ["serve_parameters", "train_worker", "evaluate_checkpoints"]


def serve_parameters(task: ClusterTask) -> None:
  """A parameter server: serves its variables until the process is
  stopped."""
  start_server(task).join()


def train_worker(search: Search) -> None:
  """A worker: trains every iteration of `search` (adanet waits for the
  chief between iterations; a worker that arrives after an iteration's
  steps are done waits for the next). Build the search with
  `stream=task.index + 1`, so each worker reads its own order of the
  training data."""
  server = start_server(search.task)  # must stay referenced while training
  c = search.config
  search.estimator.train(search.input_fns.train,
                         max_steps=c.max_iterations * c.steps_per_iteration)
  del server


def evaluate_checkpoints(search: Search,
                         on_result: Optional[Callable[[Dict], None]] = None,
                         poll_secs: float = 2.0) -> int:
  """An evaluator: evaluates every new checkpoint of `search` on the eval
  split (TensorBoard run MODEL_DIR/eval_evaluator) until one at the
  search's last step has been evaluated or the search has ended. Returns
  the number of checkpoints evaluated."""
  c, model_dir = search.config, search.model_dir
  last = c.max_iterations * c.steps_per_iteration

  def search_over() -> bool:
    try:
      saved = load_search(model_dir)
    except DamagedFile:  # the chief rebuilds it
      return False
    return bool(saved) and (saved["ended"] is not None or
                            len(saved["records"]) >= c.max_iterations)

  done = 0
  for path in tf.train.checkpoints_iterator(
      model_dir, min_interval_secs=poll_secs, timeout=poll_secs,
      timeout_fn=search_over):
    if os.path.basename(path).startswith(growth.INCREMENT_CHECKPOINT):
      # The start of the next iteration (growth.py): the finished
      # iteration's values, already evaluated, and none of the new
      # candidates' variables, which its graph would try to restore.
      continue
    metrics = search.estimator.evaluate_locally(
        search.input_fns.eval, steps=c.eval_steps or None,
        checkpoint_path=path, name="evaluator")
    done += 1
    if on_result:
      on_result({k: float(metrics[k]) for k in
                 ("accuracy", "average_loss", "loss", "global_step")})
    if int(metrics["global_step"]) >= last:
      break
  return done
