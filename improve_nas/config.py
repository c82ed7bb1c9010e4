"""The search configuration: defaults, validation and step arithmetic.

One `ml_collections.ConfigDict` holds every setting (see `base_config`); the
files in `improve_nas/configs/` start from it and change a few fields.
"""

from __future__ import annotations

import ml_collections

from improve_nas import distillation
from improve_nas.errors import ConfigError
from improve_nas.nasnet.arch import (AUX_HEAD_FILTERS, IMAGE_SIZE_RULE,
                                     ArchSpec, image_size_fits)
from improve_nas.proposals import GENERATORS
from improve_nas.tf_config import PLACEMENTS

__all__ = ["base_config", "validate", "apply_quick", "prepared",
           "aux_head_filters", "upgrade_saved", "RENAMED_FIELDS"]


def base_config() -> ml_collections.ConfigDict:
  """Every field with the paper's values where the paper gives one."""
  c = ml_collections.ConfigDict()
  # Data.
  c.dataset = "cifar10"
  c.data_dir = ""               # "" = TFDS's default directory
  c.image_size = 0              # 0 = the dataset's native size
  c.train_split = "train"
  c.eval_split = "test"
  c.random_flip = True
  c.cutout_size = 16            # Cutout side at 32x32, scaled; 0 = off
  c.shuffle_buffer = 10_000     # training examples shuffled in memory
  # Search.
  c.max_iterations = 10
  c.steps_per_iteration = 1_000_000
  c.batch_size = 32
  c.eval_steps = 0              # 0 = the whole eval split
  c.selection_steps = 0         # 0 = the whole train split, for selection
  c.generator = "constant"
  c.initial_arch = "6@768"
  c.reconsider_previous = False
  c.depth_increment = 1         # dynamic generator: cells per stack added
  c.width_increment = 240       # dynamic generator: penultimate filters added
  c.param_budget = 0            # ensemble parameters; 0 = no budget
  c.knowledge_distillation = "none"
  c.kd_temperature = 1.0
  c.learn_mixture_weights = False
  # Training of each member.
  c.learning_rate = 0.025
  c.momentum = 0.9
  c.clip_gradients = 5.0
  c.weight_decay = 5e-4
  c.label_smoothing = 0.1
  c.drop_path_keep_prob = 0.6
  c.use_aux_head = True
  c.aux_head_weight = 0.4
  # The auxiliary head's channels: a 1x1 conv to aux_head_bottleneck, then a
  # conv over the remaining map to aux_head_filters (the paper's 128 and 768,
  # whatever the tower's size; for small towers that head is many times the
  # tower, see improve-nas-arch's params+aux column).
  c.aux_head_bottleneck = AUX_HEAD_FILTERS[0]
  c.aux_head_filters = AUX_HEAD_FILTERS[1]
  # Run.
  c.seed = 42
  c.save_checkpoints_steps = 0  # 0 = once per iteration
  c.save_summary_steps = 100
  # On a TF_CONFIG cluster: "replication" (every worker trains every
  # candidate) or "round_robin" (candidates spread over the workers).
  c.placement = "replication"
  # True: shrink to a smoke run (see apply_quick); the other fields keep
  # saying which experiment it is.
  c.quick = False
  return c


# What quick mode sets: a few steps of tiny towers on 8x8 images.
_QUICK = dict(image_size=8, initial_arch="1@24", width_increment=24,
              depth_increment=1, steps_per_iteration=3, batch_size=8,
              eval_steps=1, selection_steps=1, shuffle_buffer=256,
              save_summary_steps=3, save_checkpoints_steps=0)
_QUICK_BUDGET = 1_000_000


def apply_quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`c` itself, or with quick=True a copy shrunk to a smoke run: a few steps
  of 1@24 towers (or 1@24 + deeper/wider by 24 filters) on 8x8 images, at
  most two iterations; generator, KD mode, mixture weights, aux head and
  dataset stay as configured. A parameter budget stays on, at 1M parameters
  (room for the tiny towers)."""
  if not c.get("quick", False):
    return c
  quick = ml_collections.ConfigDict(c.to_dict())
  if quick.param_budget:  # still checked, sized for the tiny towers
    quick.param_budget = _QUICK_BUDGET
  for key, value in _QUICK.items():
    quick[key] = value
  quick.max_iterations = min(c.max_iterations, 2)
  return quick


def prepared(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`c` validated, then shrunk when quick (see apply_quick).

  Raises:
    ConfigError: a bad field.
  """
  validate(c)
  return apply_quick(c)


# Fields renamed since a config.json could have been written: old -> new.
RENAMED_FIELDS = {"evaluator_steps": "selection_steps"}


def upgrade_saved(fields: dict) -> dict:
  """A saved config's fields under today's names (an old config.json still
  loads and resumes)."""
  return {RENAMED_FIELDS.get(k, k): v for k, v in fields.items()}


def aux_head_filters(c: ml_collections.ConfigDict) -> tuple:
  """(bottleneck, output) channels of the towers' auxiliary head."""
  return (c.aux_head_bottleneck, c.aux_head_filters)


def _require(condition: bool, field: str, value, fix: str) -> None:
  if not condition:
    raise ConfigError(f"config.{field}={value!r}: {fix}")


def validate(c: ml_collections.ConfigDict) -> None:
  """Raises ConfigError (one line: field, value, fix) for any bad field."""
  for field in ("max_iterations", "steps_per_iteration", "batch_size"):
    value = c[field]
    _require(isinstance(value, int) and value > 0, field, value,
             "must be a positive integer")
  for field in ("eval_steps", "selection_steps", "param_budget",
                "save_checkpoints_steps", "cutout_size", "image_size"):
    value = c[field]
    _require(isinstance(value, int) and value >= 0, field, value,
             "must be an integer >= 0 (0 means the default)")
  for field in ("shuffle_buffer", "aux_head_bottleneck", "aux_head_filters"):
    _require(isinstance(c[field], int) and c[field] > 0, field, c[field],
             "must be a positive integer")
  _require(isinstance(c.get("quick", False), bool), "quick", c.get("quick"),
           "must be True or False")
  _require(c.save_summary_steps > 0, "save_summary_steps",
           c.save_summary_steps, "must be a positive integer")
  _require(c.generator in GENERATORS, "generator", c.generator,
           f"use one of {', '.join(GENERATORS)}")
  _require(c.placement in PLACEMENTS, "placement", c.placement,
           f"use one of {', '.join(PLACEMENTS)}")
  _require(c.knowledge_distillation in distillation.KD_MODES,
           "knowledge_distillation", c.knowledge_distillation,
           f"use one of {', '.join(distillation.KD_MODES)}")
  try:
    ArchSpec.parse(c.initial_arch)
  except ConfigError as e:
    raise ConfigError(f"config.initial_arch: {e}") from None
  _require(c.depth_increment >= 0 and c.width_increment >= 0 and
           c.width_increment % 24 == 0 and
           (c.depth_increment or c.width_increment), "width_increment",
           (c.depth_increment, c.width_increment),
           "depth_increment and width_increment must be >= 0, not both 0, and "
           "width_increment a multiple of 24")
  _require(c.kd_temperature > 0, "kd_temperature", c.kd_temperature,
           "must be > 0")
  for field in ("learning_rate", "momentum", "clip_gradients", "weight_decay",
                "label_smoothing", "aux_head_weight"):
    _require(c[field] >= 0, field, c[field], "must be >= 0")
  _require(0 < c.drop_path_keep_prob <= 1, "drop_path_keep_prob",
           c.drop_path_keep_prob, "must be in (0, 1]")
  _require(c.label_smoothing < 1, "label_smoothing", c.label_smoothing,
           "must be < 1")
  if c.image_size:
    _require(image_size_fits(c.image_size), "image_size", c.image_size,
             f"use {IMAGE_SIZE_RULE}")
