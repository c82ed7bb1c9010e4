"""What the generators propose: architectures for the next member, under a
parameter budget.

The constant generator (G_C) proposes one fixed architecture every
iteration; the dynamic one (G_D) a deeper and a wider neighbour of the last
chosen member. Proposals depend only on the members so far, so an engine
may ask again whenever it rebuilds a past iteration. Engines turn each
`Candidate` into something they train (adanet: builder.CandidateGenerator).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Sequence, Tuple, Type

from improve_nas.errors import ConfigError, SearchEnded
from improve_nas.nasnet.arch import ArchSpec

__all__ = ["Candidate", "Proposer", "ConstantProposer", "DynamicProposer",
           "GENERATORS", "make_proposer", "candidate_name", "candidate_arch",
           "member_key"]


def candidate_name(arch: ArchSpec) -> str:
  """A candidate's name in graphs, records and metrics: "nasnet_1x96"."""
  return f"nasnet_{arch.slug}"


def candidate_arch(name: str) -> ArchSpec:
  """The architecture of a candidate's name: "nasnet_1x96" -> 1@96."""
  return ArchSpec.parse(name.removeprefix("nasnet_").replace("x", "@"))


def member_key(iteration: int, name: str) -> str:
  """How a member is named in metrics: "t0_nasnet_1x96" is the candidate
  nasnet_1x96 trained at iteration 0."""
  return f"t{iteration}_{name}"


@dataclasses.dataclass(frozen=True)
class Candidate:
  """One proposed architecture, why it was proposed, and its size."""

  arch: ArchSpec
  reason: str  # "constant" | "start" | "deeper" | "wider" | "same"
  params: int

  @property
  def name(self) -> str:
    return candidate_name(self.arch)


class Proposer:
  """Proposes architectures and drops those that overflow the budget.

  Args:
    count_fn: arch -> trainable parameters the member would add.
    param_budget: max parameters of the whole ensemble; 0 means no budget.
  """

  def __init__(self, count_fn: Callable[[ArchSpec], int],
               param_budget: int = 0):
    self._count_fn = count_fn
    self._budget = param_budget

  def propose(self, members: List[ArchSpec]) -> List[Tuple[ArchSpec, str]]:
    raise NotImplementedError

  def candidates(self, members: Sequence[Tuple[ArchSpec, int]]
                 ) -> Tuple[List[Candidate], List[Candidate]]:
    """All proposals after `members` ((arch, params), oldest first), and
    those within the budget."""
    used = sum(params for _, params in members)
    proposed, seen = [], set()
    for arch, reason in self.propose([arch for arch, _ in members]):
      if arch not in seen:
        seen.add(arch)
        proposed.append(Candidate(arch, reason, self._count_fn(arch)))
    fitting = [c for c in proposed
               if not self._budget or used + c.params <= self._budget]
    return proposed, fitting

  def fitting(self, members: Sequence[Tuple[ArchSpec, int]],
              iteration: int) -> List[Candidate]:
    """The candidates of `iteration` that fit the budget.

    Raises:
      SearchEnded: none fits.
    """
    proposed, fitting = self.candidates(members)
    if not fitting:
      used = sum(params for _, params in members)
      sizes = ", ".join(f"{c.arch} ({c.params:,})" for c in proposed)
      raise SearchEnded(
          f"search ended before iteration {iteration + 1}: no candidate "
          f"fits the parameter budget of {self._budget:,} (the ensemble has "
          f"{used:,} parameters; proposed {sizes})")
    return fitting

  def fitting_after(self, archs: Sequence[ArchSpec],
                    iteration: int) -> List[Candidate]:
    """`fitting` after members of these architectures (oldest first)."""
    return self.fitting([(a, self._count_fn(a)) for a in archs], iteration)

  def check_first_fits(self) -> None:
    """Raises ConfigError when no first candidate fits the budget."""
    proposed, fitting = self.candidates([])
    if not fitting:
      smallest = min(proposed, key=lambda x: x.params)
      raise ConfigError(
          f"config.param_budget={self._budget}: smaller than the smallest "
          f"first candidate {smallest.arch} ({smallest.params:,} parameters); "
          "raise it or set 0 for no budget")

  @classmethod
  def from_config(cls, c, count_fn: Callable[[ArchSpec], int]) -> "Proposer":
    raise NotImplementedError


class ConstantProposer(Proposer):
  """G_C: one candidate of a fixed architecture every iteration."""

  def __init__(self, arch: "ArchSpec | str", **kwargs):
    super().__init__(**kwargs)
    self._arch = ArchSpec.parse(arch)

  def propose(self, members):
    return [(self._arch, "constant")]

  @classmethod
  def from_config(cls, c, count_fn):
    return cls(c.initial_arch, count_fn=count_fn, param_budget=c.param_budget)


class DynamicProposer(Proposer):
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

  @classmethod
  def from_config(cls, c, count_fn):
    return cls(c.initial_arch, c.reconsider_previous, c.depth_increment,
               c.width_increment, count_fn=count_fn,
               param_budget=c.param_budget)


# config.generator -> the Proposer it names.
GENERATORS: Dict[str, Type[Proposer]] = {"constant": ConstantProposer,
                                         "dynamic": DynamicProposer}


def make_proposer(c, count_fn: Callable[[ArchSpec], int]) -> Proposer:
  """The Proposer of config `c` (its generator, architectures, budget)."""
  if c.generator not in GENERATORS:
    raise ConfigError(f"config.generator={c.generator!r}: use one of "
                      f"{', '.join(GENERATORS)}")
  return GENERATORS[c.generator].from_config(c, count_fn)
