"""One machine, several devices: the search under tf.distribute.MirroredStrategy.

Each training step is split over the devices: every replica gets an equal
share of the global batch (config.batch_size), computes its gradients, and
the summed gradients update every replica's copy of the variables the same
way. Selection, evaluation and export run on one device as before.

adanet 0.9.0 does not support tf.distribute (its issue 87); what it needs to
run under replicas is in `compat` (per-thread subnetwork context, the
distributed summary op) and in our Builder and Ensembler (they take their
variables from their own layers, since the replicas after the first reuse
the first one's variables and adanet's collection diff finds none).

    strategy = mirrored.strategy(cpu_devices=2)   # or 0: the visible GPUs
    run_config = tf.estimator.RunConfig(train_distribute=strategy)
    search.run_search(config, model_dir, run_config=run_config)
"""

from __future__ import annotations

from typing import List

import tensorflow as tf

from improve_nas.errors import ConfigError

__all__ = ["use_cpu_devices", "strategy", "cpu_device_count",
           "replica_batch_size"]


def use_cpu_devices(count: int) -> None:
  """Splits this process's CPU into `count` logical devices (/cpu:0 ...).

  Must run before TensorFlow has initialised its devices (before any graph
  runs or any device is listed).

  Raises:
    ConfigError: count < 1, or the devices were already initialised with
      another count.
  """
  if count < 1:
    raise ConfigError(f"cpu_devices={count}: must be at least 1 (2 or more "
                      "to split each step over CPU replicas)")
  cpu = tf.config.list_physical_devices("CPU")[0]
  wanted = [tf.config.LogicalDeviceConfiguration()] * count
  try:
    tf.config.set_logical_device_configuration(cpu, wanted)
  except RuntimeError as e:  # already initialised
    have = len(tf.config.list_logical_devices("CPU"))
    if have != count:
      raise ConfigError(
          f"cpu_devices={count}: TensorFlow already started with {have} CPU "
          "device(s) in this process; set the CPU devices before anything "
          f"runs ({e})") from None


def _devices(cpu_devices: int) -> List[str]:
  if cpu_devices:
    use_cpu_devices(cpu_devices)
    return [f"/cpu:{i}" for i in range(cpu_devices)]
  gpus = tf.config.list_logical_devices("GPU")
  return [d.name for d in gpus] or ["/cpu:0"]


def strategy(cpu_devices: int = 0) -> tf.distribute.MirroredStrategy:
  """A MirroredStrategy over `cpu_devices` logical CPU devices, or with 0
  over every visible GPU (the CPU when there is none).

  Gradients are summed on one device (ReductionToOneDevice): with the
  default reduction even a plain tf.estimator.Estimator hung in its first
  step on logical CPU devices.
  """
  return tf.distribute.MirroredStrategy(
      _devices(cpu_devices),
      cross_device_ops=tf.distribute.ReductionToOneDevice())


def cpu_device_count(distribution) -> int:
  """How many CPU devices a session needs for `distribution`'s replicas
  (0 when it uses no CPU device beyond the first)."""
  if distribution is None:
    return 0
  indices = [tf.DeviceSpec.from_string(d).device_index or 0
             for d in distribution.extended.worker_devices
             if tf.DeviceSpec.from_string(d).device_type == "CPU"]
  return max(indices) + 1 if indices and max(indices) > 0 else 0


def replica_batch_size(batch_size: int, replicas: int) -> int:
  """Each replica's share of the global batch.

  Raises:
    ConfigError: the global batch does not split evenly.
  """
  if batch_size % replicas:
    raise ConfigError(
        f"config.batch_size={batch_size}: the global batch must split evenly "
        f"over the {replicas} replicas; use a multiple of {replicas}")
  return batch_size // replicas
