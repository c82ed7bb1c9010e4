"""What a comparison study runs: arms (a config plus overrides) over seeds.

An `Arm` names a config (a shipped name such as `demo` or
`paper:cifar10,w_akd`, or a config file) and the fields it changes. A
single-tower arm (`tower_of`) is derived from another arm once that arm's
runs have finished: a one-iteration search of the N@P tower whose parameter
count is nearest to the other arm's final ensemble without exceeding it,
trained with one member's schedule (`schedule="member"`, the paper's
comparison) or for the search's total steps (`schedule="total"`).

Built-in studies (`builtin_study`): `demo` (the demo search, its two
single-tower comparisons, and the paper's ablations of KD mode, mixture
weights and generator on the same data) and `paper:DATASET` (Table 1's rows).
Nothing here imports TensorFlow except `size_tower`, which counts towers.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from typing import Callable, Dict, List, Optional, Sequence

import ml_collections

from improve_nas import configs
from improve_nas.errors import ConfigError

__all__ = ["Arm", "Study", "load_config", "parse_arm", "parse_value",
           "builtin_study", "STUDIES", "tower_arm_overrides", "size_tower",
           "SCHEDULES"]

SCHEDULES = ("member", "total")


@dataclasses.dataclass(frozen=True)
class Arm:
  """One arm of a study: `config` with `overrides` (field -> value).

  With `tower_of`, the arm is a single tower sized after that arm's final
  ensemble, trained on `schedule` ("member" or "total"); its `overrides`
  then change that tower's search further.
  """

  name: str
  config: str = "demo"
  overrides: Dict[str, object] = dataclasses.field(default_factory=dict)
  tower_of: Optional[str] = None
  schedule: str = "member"

  def __post_init__(self):
    if not self.name or not all(ch.isalnum() or ch in "_-." for ch in
                                self.name):
      raise ConfigError(
          f"arm name {self.name!r}: use letters, digits, '_', '-' or '.' "
          "(it names a folder)")
    if self.schedule not in SCHEDULES:
      raise ConfigError(f"arm {self.name!r}: schedule {self.schedule!r}; use "
                        f"one of {', '.join(SCHEDULES)}")

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict) -> "Arm":
    return cls(**d)


@dataclasses.dataclass(frozen=True)
class Study:
  """Arms run over seeds; `settings` are fields set in every arm first."""

  name: str
  arms: List[Arm]
  seeds: List[int]
  settings: Dict[str, object] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    names = [a.name for a in self.arms]
    if not names:
      raise ConfigError("a study needs at least one arm: give --study=NAME or "
                        "--arm='NAME=CONFIG [FIELD=VALUE ...]'")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
      raise ConfigError(f"arm names must differ: {', '.join(twice)} given "
                        "twice")
    for arm in self.arms:
      if arm.tower_of is not None and arm.tower_of not in names:
        raise ConfigError(f"arm {arm.name!r}: tower_of={arm.tower_of!r} names "
                          "no arm of the study")
      if arm.tower_of is not None and next(
          a for a in self.arms if a.name == arm.tower_of).tower_of:
        raise ConfigError(f"arm {arm.name!r}: tower_of={arm.tower_of!r} is a "
                          "tower arm itself; name an ensemble arm")
    if not self.seeds or len(set(self.seeds)) != len(self.seeds):
      raise ConfigError(f"seeds {self.seeds}: give one or more distinct "
                        "integers, e.g. --seeds=1,2,3")

  def to_dict(self) -> dict:
    return {"study": self.name, "arms": [a.to_dict() for a in self.arms],
            "seeds": list(self.seeds), "settings": dict(self.settings)}

  @classmethod
  def from_dict(cls, d: dict) -> "Study":
    return cls(name=d["study"], arms=[Arm.from_dict(a) for a in d["arms"]],
               seeds=list(d["seeds"]), settings=dict(d["settings"]))


def parse_value(text: str, current):
  """`text` as a value of the type of the field's `current` value."""
  if isinstance(current, bool):
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
      return True
    if lowered in ("false", "0", "no"):
      return False
    raise ValueError(f"{text!r} is not True or False")
  if isinstance(current, int):
    return int(text.replace("_", ""))
  if isinstance(current, float):
    return float(text)
  return text


def load_config(spec: str, overrides: Optional[Dict[str, object]] = None
                ) -> ml_collections.ConfigDict:
  """The config `spec` (a shipped name or a file, with `:ARG`) with
  `overrides` applied (values as given, or strings parsed to the field's
  type). Raises ConfigError for a config that does not load or a bad field.
  """
  path, _, arg = configs.resolve(spec).partition(":")
  if not os.path.isfile(path):
    raise ConfigError(f"config {spec!r}: no such shipped config or file; use "
                      f"{' or '.join(configs.NAMES)} (paper:DATASET,ROW) or a "
                      "config file such as my_configs/search.py")
  module_spec = importlib.util.spec_from_file_location(
      f"_improve_nas_config_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
    c = module.get_config(arg) if arg else module.get_config()
  except ConfigError as e:
    raise ConfigError(f"config {spec!r}: {e}") from None
  except Exception as e:  # pylint: disable=broad-except
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise ConfigError(f"config {spec!r} could not be loaded: {reason}") \
        from None
  for field, value in (overrides or {}).items():
    if field not in c:
      raise ConfigError(f"config {spec!r} has no field {field!r}; the fields "
                        "are those of improve_nas/config.py:base_config")
    try:
      c[field] = (parse_value(value, c[field]) if isinstance(value, str)
                  else value)
    except (ValueError, TypeError) as e:
      raise ConfigError(f"config {spec!r}: {field}={value!r}: "
                        f"{str(e).splitlines()[0]}") from None
  return c


def parse_arm(text: str) -> Arm:
  """`NAME=CONFIG [FIELD=VALUE ...]`, e.g. `nokd=demo
  knowledge_distillation=none`; `tower_of=ARM` and `schedule=member|total`
  make it a single-tower arm."""
  words = text.split()
  name, sep, config = words[0].partition("=") if words else ("", "", "")
  if not sep or not name or not config:
    raise ConfigError(f"--arm={text!r}: expected 'NAME=CONFIG [FIELD=VALUE "
                      "...]', e.g. --arm='nokd=demo "
                      "knowledge_distillation=none'")
  overrides, special = {}, {}
  for word in words[1:]:
    field, sep, value = word.partition("=")
    if not sep or not field:
      raise ConfigError(f"--arm={text!r}: {word!r} is not FIELD=VALUE")
    (special if field in ("tower_of", "schedule") else overrides)[field] = \
        value
  return Arm(name=name, config=config, overrides=overrides, **special)


def _flip(c: ml_collections.ConfigDict) -> List[Arm]:
  """The paper's ablations of `c`: every other KD mode, the other kind of
  mixture weights, the other generator."""
  from improve_nas.distillation import KD_MODES  # pylint: disable=g-import-not-at-top
  arms = [Arm(f"kd_{mode}", "demo", {"knowledge_distillation": mode})
          for mode in KD_MODES if mode != c.knowledge_distillation]
  weights = "uniform" if c.learn_mixture_weights else "learned"
  arms.append(Arm(f"weights_{weights}", "demo",
                  {"learn_mixture_weights": not c.learn_mixture_weights}))
  other = "constant" if c.generator == "dynamic" else "dynamic"
  arms.append(Arm(f"generator_{other}", "demo", {"generator": other}))
  return arms


def builtin_study(name: str, seeds: Sequence[int],
                  settings: Optional[Dict[str, object]] = None) -> Study:
  """`demo` or `paper:DATASET` (see the module docstring)."""
  settings = dict(settings or {})
  if name == "demo":
    demo = load_config("demo", settings)
    arms = [Arm("demo", "demo"),
            Arm("tower_member", "demo", tower_of="demo", schedule="member"),
            Arm("tower_total", "demo", tower_of="demo", schedule="total"),
            *_flip(demo)]
    return Study(name, arms, list(seeds), settings)
  kind, _, dataset = name.partition(":")
  if kind == "paper":
    from improve_nas.configs import paper  # pylint: disable=g-import-not-at-top
    if dataset not in paper.DATASETS:
      raise ConfigError(f"--study={name!r}: use paper:DATASET with DATASET one "
                        f"of {', '.join(paper.DATASETS)}")
    arms = [Arm(row, f"paper:{dataset},{row}") for row in paper.ROWS]
    return Study(name, arms, list(seeds), settings)
  raise ConfigError(f"--study={name!r}: use {', '.join(STUDIES)} (or give "
                    "arms with --arm)")


STUDIES = ("demo", "paper:cifar10", "paper:cifar100")


def size_tower(target_params: int, count: Callable[[str], int],
               max_cells: int = 6, step: int = 24) -> str:
  """The N@P (N <= max_cells, P a multiple of `step`) whose `count` is the
  largest not above `target_params`. `count` grows with P, so each N is a
  binary search."""
  best, best_count = None, -1
  for cells in range(1, max_cells + 1):
    if count(f"{cells}@{step}") > target_params:
      break
    low, high = 1, 2
    while count(f"{cells}@{high * step}") <= target_params:
      low, high = high, high * 2
    while high - low > 1:  # count(low) fits, count(high) does not
      middle = (low + high) // 2
      if count(f"{cells}@{middle * step}") <= target_params:
        low = middle
      else:
        high = middle
    fits = count(f"{cells}@{low * step}")
    if fits > best_count:
      best, best_count = f"{cells}@{low * step}", fits
  if best is None:
    raise ConfigError(f"no NASNet-A tower has at most {target_params:,} "
                      "parameters")
  return best


def tower_arm_overrides(arm: Arm, base: Arm, resolved: dict,
                        target_params: int, count: Callable[[str], int]
                        ) -> Dict[str, object]:
  """The overrides that run `arm` (a tower arm of `base`): `resolved` is a
  config.json of one of base's runs (quick mode already applied), and the
  tower is sized to `target_params`."""
  plain = json.loads(load_config(base.config).to_json())
  overrides = {k: v for k, v in resolved.items()
               if k in plain and plain[k] != v and k != "seed"}
  steps = resolved["steps_per_iteration"]
  if arm.schedule == "total":
    steps *= resolved["max_iterations"]
  overrides.update(
      quick=False, generator="constant", reconsider_previous=False,
      param_budget=0, max_iterations=1, steps_per_iteration=steps,
      initial_arch=size_tower(target_params, count))
  overrides.update(arm.overrides)
  return overrides

