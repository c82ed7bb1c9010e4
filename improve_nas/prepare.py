"""What a search does with its model_dir before it trains, whatever its
engine: start over, or check what is there and recover what can be."""

from __future__ import annotations

import os
from typing import Callable, List, Optional, Tuple

import tensorflow as tf

from improve_nas.lock import LOCK_FILE
from improve_nas.model_dir import (checkpoint_iteration,
                                   ensure_intact_checkpoint, saved_config,
                                   saved_records)
from improve_nas.records import (CONFIG_FILE, IterationRecord,
                                 check_model_dir, write_engine, write_records)

__all__ = ["prepare_model_dir"]


def prepare_model_dir(c, model_dir: str, overwrite: bool,
                      notice: Callable[[str], None], engine: str = "adanet"
                      ) -> Tuple[List[IterationRecord], Optional[int]]:
  """With the model_dir's lock held: deletes everything but the lock
  (`overwrite`), or checks the saved config and engine, sets damaged
  checkpoints and files aside and rebuilds the records they lost (saying
  so to `notice`). Then writes engine.json (engines other than adanet) and
  config.json. Returns (the records of the iterations done, the global step
  of the checkpoint to resume, None when there is none)."""
  tf.io.gfile.makedirs(model_dir)
  config_path = os.path.join(model_dir, CONFIG_FILE)
  step = None
  if overwrite:
    for name in tf.io.gfile.listdir(model_dir):
      path = os.path.join(model_dir, name)
      if name == LOCK_FILE:
        continue
      if tf.io.gfile.isdir(path):
        tf.io.gfile.rmtree(path)
      else:
        tf.io.gfile.remove(path)
    done = []
  else:
    saved, damaged = saved_config(model_dir)  # again, under the lock
    if saved is not None:  # (a cluster's workers may have written already)
      check_model_dir(c, model_dir, saved, engine=engine)
    if damaged:
      tf.io.gfile.rename(config_path, config_path + ".damaged", overwrite=True)
      notice(f"{damaged}; kept the damaged file as {CONFIG_FILE}.damaged")
    adanet = engine == "adanet"
    step, lines = ensure_intact_checkpoint(
        model_dir, c.steps_per_iteration if adanet else None)
    for line in lines:
      notice(line)
    finished = (checkpoint_iteration(model_dir) if adanet else
                (step or 0) // c.steps_per_iteration)
    done, rebuilt = saved_records(model_dir, step, finished)
    if rebuilt:
      notice(rebuilt)
      write_records(model_dir, done, None)
  if engine != "adanet":
    write_engine(model_dir, engine)
  # Written whole, then renamed: a worker of a cluster may read it now.
  with tf.io.gfile.GFile(config_path + ".tmp", "w") as f:
    f.write(c.to_json(indent=1))
  tf.io.gfile.rename(config_path + ".tmp", config_path, overwrite=True)
  return done, step
