"""Candidate generators: constant and dynamic, both under a parameter budget.

Adanet calls `generate_candidates` again whenever it rebuilds a past
iteration, so proposals depend only on the previous ensemble's members.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Optional, Tuple

import adanet

from improve_nas.errors import ConfigError, SearchEnded
from improve_nas.nasnet.arch import ArchSpec

__all__ = ["Candidate", "ConstantGenerator", "DynamicGenerator",
           "GENERATORS", "make_generator", "member_archs"]


@dataclasses.dataclass(frozen=True)
class Candidate:
  """One proposed architecture, why it was proposed, and its size."""

  arch: ArchSpec
  reason: str  # "constant" | "start" | "deeper" | "wider" | "same"
  params: int


def member_archs(previous_ensemble) -> List[Tuple[ArchSpec, int]]:
  """(arch, params) of every member of an adanet ensemble, oldest first."""
  if previous_ensemble is None:
    return []
  return [(ArchSpec.parse(ws.subnetwork.shared["arch"]),
           int(ws.subnetwork.shared["params"]))
          for ws in previous_ensemble.weighted_subnetworks]


class _BudgetedGenerator(adanet.subnetwork.Generator):
  """Proposes architectures and drops those that overflow the budget.

  Args:
    builder_fn: arch -> adanet.subnetwork.Builder.
    count_fn: arch -> trainable parameters the member would add.
    param_budget: max parameters of the whole ensemble; 0 means no budget.
  """

  def __init__(self, builder_fn: Callable, count_fn: Callable[[ArchSpec], int],
               param_budget: int = 0):
    self._builder_fn = builder_fn
    self._count_fn = count_fn
    self._budget = param_budget
    # iteration -> (all proposals, the ones that fit); for search records.
    self.proposals: Dict[int, Tuple[List[Candidate], List[Candidate]]] = {}

  def propose(self, members: List[ArchSpec]) -> List[Tuple[ArchSpec, str]]:
    raise NotImplementedError

  def candidates(self, members: List[Tuple[ArchSpec, int]]
                 ) -> Tuple[List[Candidate], List[Candidate]]:
    """All proposals after `members`, and those within the budget."""
    used = sum(params for _, params in members)
    proposed, seen = [], set()
    for arch, reason in self.propose([arch for arch, _ in members]):
      if arch not in seen:
        seen.add(arch)
        proposed.append(Candidate(arch, reason, self._count_fn(arch)))
    fitting = [c for c in proposed
               if not self._budget or used + c.params <= self._budget]
    return proposed, fitting

  def generate_candidates(self, previous_ensemble, iteration_number,
                          previous_ensemble_reports, all_reports, config):
    del previous_ensemble_reports, all_reports, config
    members = member_archs(previous_ensemble)
    proposed, fitting = self.candidates(members)
    self.proposals[iteration_number] = (proposed, fitting)
    if not fitting:
      used = sum(params for _, params in members)
      sizes = ", ".join(f"{c.arch} ({c.params:,})" for c in proposed)
      raise SearchEnded(
          f"search ended before iteration {iteration_number + 1}: no candidate "
          f"fits the parameter budget of {self._budget:,} (the ensemble has "
          f"{used:,} parameters; proposed {sizes})")
    return [self._builder_fn(c.arch) for c in fitting]


class ConstantGenerator(_BudgetedGenerator):
  """G_C: one candidate of a fixed architecture every iteration."""

  def __init__(self, arch: "ArchSpec | str", **kwargs):
    super().__init__(**kwargs)
    self._arch = ArchSpec.parse(arch)

  def propose(self, members):
    return [(self._arch, "constant")]


class DynamicGenerator(_BudgetedGenerator):
  """G_D: a deeper and a wider neighbour of the last chosen member.

  At the first iteration the neighbours of `initial_arch`. With
  `reconsider_previous` the last chosen architecture (or `initial_arch`) is
  proposed again as well.
  """

  def __init__(self, initial_arch: "ArchSpec | str",
               reconsider_previous: bool = False, depth_increment: int = 1,
               width_increment: int = 240, **kwargs):
    super().__init__(**kwargs)
    self._initial = ArchSpec.parse(initial_arch)
    self._reconsider = reconsider_previous
    self._depth = depth_increment
    self._width = width_increment

  def propose(self, members):
    base = members[-1] if members else self._initial
    out = [(base.deeper(self._depth), "deeper"),
           (base.wider(self._width), "wider")]
    if self._reconsider:
      out.append((base, "same"))
    return out


GENERATORS = {"constant": ConstantGenerator, "dynamic": DynamicGenerator}


def make_generator(name: str, initial_arch: str, builder_fn: Callable,
                   count_fn: Callable, param_budget: int = 0,
                   reconsider_previous: bool = False, depth_increment: int = 1,
                   width_increment: int = 240) -> _BudgetedGenerator:
  """The generator called `name` ("constant" or "dynamic")."""
  common = dict(builder_fn=builder_fn, count_fn=count_fn,
                param_budget=param_budget)
  if name == "constant":
    return ConstantGenerator(initial_arch, **common)
  if name == "dynamic":
    return DynamicGenerator(initial_arch, reconsider_previous,
                            depth_increment, width_increment, **common)
  raise ConfigError(f"generator {name!r} is not known; use one of "
                    f"{', '.join(GENERATORS)}")
