"""A search on a TF_CONFIG cluster: which task this process is, its server,
and what each kind of task runs.

adanet's own distributed mode, on TensorFlow's distributed runtime:
asynchronous data parallelism with the variables on parameter servers.

* chief: runs `search.run_search` as a single process would (adanet's
  bookkeeping between iterations, the search record, the export), and also
  trains.
* worker: trains (`train_worker`); adanet makes it wait at each iteration
  boundary until the chief has prepared the next iteration.
* ps: holds variables (`serve_parameters`, never returns).
* evaluator: evaluates every new checkpoint on the eval split
  (`evaluate_checkpoints`) until the search is over.

Placement of the candidates (`config.placement`): "replication", every
worker trains every candidate; "round_robin", the candidates are spread
over the workers (and their variables over the parameter servers), so each
candidate can have a worker, and its GPU, of its own.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Dict, List, Optional

import ml_collections
import tensorflow as tf

from improve_nas import compat
from improve_nas.errors import ConfigError

__all__ = ["PLACEMENTS", "Task", "current_task", "placement_strategy",
           "session_config", "start_server", "serve_parameters",
           "train_worker", "evaluate_checkpoints"]

PLACEMENTS = ("replication", "round_robin")
ROLES = ("chief", "worker", "ps", "evaluator")


@dataclasses.dataclass(frozen=True)
class Task:
  """This process's place in the cluster; `type` "local" without one."""

  type: str
  index: int = 0
  cluster: Dict[str, List[str]] = dataclasses.field(default_factory=dict)

  @property
  def distributed(self) -> bool:
    return self.type != "local"

  def __str__(self) -> str:
    return "local" if not self.distributed else f"{self.type} {self.index}"


def current_task(environ=None) -> Task:
  """The task TF_CONFIG describes, or Task("local") when it is unset.

  Raises:
    ConfigError: TF_CONFIG is not JSON, or names an unknown task type, a
      task index the cluster lacks, or a cluster without a chief.
  """
  raw = (os.environ if environ is None else environ).get("TF_CONFIG", "")
  if not raw.strip():
    return Task("local")
  try:
    spec = json.loads(raw)
    cluster = {k: list(v) for k, v in spec.get("cluster", {}).items()}
    task = spec.get("task", {})
    kind, index = task.get("type"), int(task.get("index", 0))
  except (ValueError, TypeError, AttributeError) as e:
    raise ConfigError(f"TF_CONFIG={raw!r} is not a cluster description "
                      f"({e}); see the README's distributed section") from None
  if kind not in ROLES:
    raise ConfigError(f"TF_CONFIG task type {kind!r} is not one of "
                      f"{', '.join(ROLES)}; fix the task in TF_CONFIG")
  if len(cluster.get("chief", [])) != 1:
    raise ConfigError(f"TF_CONFIG cluster {cluster} needs exactly one "
                      "\"chief\" address; add it")
  if kind != "evaluator" and not 0 <= index < len(cluster.get(kind, [])):
    raise ConfigError(f"TF_CONFIG task {kind} {index}: the cluster has "
                      f"{len(cluster.get(kind, []))} {kind} address(es); "
                      "fix the task index or the cluster")
  return Task(kind, index, cluster)


def placement_strategy(name: str):
  """adanet's placement strategy of that name (see the module docstring),
  or None for replication, adanet's default."""
  import adanet  # pylint: disable=g-import-not-at-top
  if name == "replication":
    return None
  if name == "round_robin":
    return adanet.distributed.RoundRobinStrategy()
  raise ConfigError(f"config.placement={name!r}: use one of "
                    f"{', '.join(PLACEMENTS)}")


def session_config(task: Task,
                   base: tf.compat.v1.ConfigProto) -> tf.compat.v1.ConfigProto:
  """`base` restricted to the devices this task talks to: the parameter
  servers and itself, so it does not wait for the other workers."""
  config = tf.compat.v1.ConfigProto()
  config.CopyFrom(base)
  if task.type in ("chief", "worker"):
    del config.device_filters[:]
    config.device_filters.extend(["/job:ps",
                                  f"/job:{task.type}/task:{task.index}"])
  return config


def start_server(task: Task):
  """Starts this task's in-process gRPC server (chief, worker or ps)."""
  return tf.distribute.Server(
      tf.train.ClusterSpec(task.cluster), job_name=task.type,
      task_index=task.index,
      config=session_config(task, tf.compat.v1.ConfigProto()), start=True)


def serve_parameters(task: Task) -> None:
  """A parameter server: serves its variables until the process is
  stopped."""
  start_server(task).join()


def train_worker(c: ml_collections.ConfigDict, model_dir: str,
                 task: Task) -> None:
  """A worker: trains every iteration of the search in `model_dir` (adanet
  waits for the chief between iterations; a worker that arrives after an
  iteration's steps are done waits for the next). Each worker reads its
  own order of the training data."""
  # pylint: disable=g-import-not-at-top
  from improve_nas import config as config_lib
  from improve_nas.estimator import input_fns, make_estimator
  # pylint: enable=g-import-not-at-top
  config_lib.validate(c)
  c = config_lib.apply_quick(c)
  server = start_server(task)  # must stay referenced while training
  estimator = make_estimator(c, model_dir=model_dir)
  fns = input_fns(c, model_dir, stream=task.index + 1)
  estimator.train(fns.train,
                  max_steps=c.max_iterations * c.steps_per_iteration)
  del server


def evaluate_checkpoints(c: ml_collections.ConfigDict, model_dir: str,
                         on_result: Optional[Callable[[Dict], None]] = None,
                         poll_secs: float = 2.0) -> int:
  """An evaluator: evaluates every new checkpoint of the search in
  `model_dir` on the eval split (TensorBoard run MODEL_DIR/eval_evaluator)
  until one at the search's last step has been evaluated or the search has
  ended. Returns the number of checkpoints evaluated."""
  # pylint: disable=g-import-not-at-top
  from improve_nas import config as config_lib
  from improve_nas import search
  from improve_nas.estimator import input_fns, make_estimator
  # pylint: enable=g-import-not-at-top
  config_lib.validate(c)
  c = config_lib.apply_quick(c)
  last = c.max_iterations * c.steps_per_iteration
  estimator = make_estimator(c, model_dir=model_dir)
  fns = input_fns(c, model_dir)

  def search_over() -> bool:
    try:
      saved = search.load_search(model_dir)
    except search.DamagedFile:  # the chief rebuilds it
      return False
    return bool(saved) and (saved["ended"] is not None or
                            len(saved["records"]) >= c.max_iterations)

  done = 0
  for path in tf.train.checkpoints_iterator(
      model_dir, min_interval_secs=poll_secs, timeout=poll_secs,
      timeout_fn=search_over):
    metrics = compat.evaluate_locally(
        estimator, fns.eval, steps=c.eval_steps or None,
        checkpoint_path=path, name="evaluator")
    done += 1
    if on_result:
      on_result({k: float(metrics[k]) for k in
                 ("accuracy", "average_loss", "loss", "global_step")})
    if int(metrics["global_step"]) >= last:
      break
  return done
