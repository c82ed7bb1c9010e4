"""Facts of a TF_CONFIG cluster: which task this process is, the devices it
talks to, and its server. What each kind of task runs is in roles.py.

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
from typing import Dict, List

import tensorflow as tf

from improve_nas.errors import ConfigError

__all__ = ["PLACEMENTS", "ROLES", "ClusterTask", "current_task",
           "session_config", "start_server"]

PLACEMENTS = ("replication", "round_robin")
ROLES = ("chief", "worker", "ps", "evaluator")


@dataclasses.dataclass(frozen=True)
class ClusterTask:
  """This process's place in the cluster; `type` "local" without one."""

  type: str
  index: int = 0
  cluster: Dict[str, List[str]] = dataclasses.field(default_factory=dict)

  @property
  def distributed(self) -> bool:
    return self.type != "local"

  def __str__(self) -> str:
    return "local" if not self.distributed else f"{self.type} {self.index}"


def current_task(environ=None) -> ClusterTask:
  """The task TF_CONFIG describes, or ClusterTask("local") when it is unset.

  Raises:
    ConfigError: TF_CONFIG is not JSON, or names an unknown task type, a
      task index the cluster lacks, or a cluster without a chief.
  """
  raw = (os.environ if environ is None else environ).get("TF_CONFIG", "")
  if not raw.strip():
    return ClusterTask("local")
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
  return ClusterTask(kind, index, cluster)


def session_config(task: ClusterTask,
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


def start_server(task: ClusterTask):
  """Starts this task's in-process gRPC server (chief, worker or ps)."""
  return tf.distribute.Server(
      tf.train.ClusterSpec(task.cluster), job_name=task.type,
      task_index=task.index,
      config=session_config(task, tf.compat.v1.ConfigProto()), start=True)
