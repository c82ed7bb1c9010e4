"""NASNet-A architecture specs of the form "N@P".

N is the number of normal cells per stack (there are 3 stacks) and P the number
of penultimate filters. The conv filter count of the first stack is P / 24.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Tuple

from improve_nas.errors import ConfigError

__all__ = ["ArchSpec", "PENULTIMATE_PER_CONV_FILTER", "AUX_HEAD_FILTERS",
           "IMAGE_SIZE_RULE", "image_size_fits", "CellSpec", "NORMAL_CELL",
           "REDUCTION_CELL"]

# The tower halves its images twice (two reduction cells).
IMAGE_SIZE_RULE = "a multiple of 4 such as 8, 16 or 32 (the tower halves it twice)"


def image_size_fits(size) -> bool:
  """Whether a tower takes square images of side `size`."""
  return (isinstance(size, int) and not isinstance(size, bool) and size >= 4
          and size % 4 == 0)

# The paper's auxiliary head: a 1x1 conv to 128 channels, then a conv over
# the remaining map to 768, whatever the tower's size.
AUX_HEAD_FILTERS = (128, 768)

# The last stack has 4F filters per state and a normal cell concatenates 6
# states: 24 F penultimate filters.
PENULTIMATE_PER_CONV_FILTER = 24
_PATTERN = re.compile(r"^\s*(\d+)\s*@\s*(\d+)\s*$")


@dataclasses.dataclass(frozen=True, order=True)
class ArchSpec:
  """A validated NASNet-A(N@P) architecture.

  Attributes:
    cells_per_stack: N, normal cells in each of the 3 stacks.
    penultimate_filters: P, channels before the head; a multiple of 24.
  """

  cells_per_stack: int
  penultimate_filters: int

  def __post_init__(self):
    text = f"{self.cells_per_stack}@{self.penultimate_filters}"
    if self.cells_per_stack < 1:
      raise ConfigError(
          f"arch '{text}': cells per stack must be at least 1 (e.g. '1@240')")
    if self.penultimate_filters < PENULTIMATE_PER_CONV_FILTER:
      raise ConfigError(
          f"arch '{text}': penultimate filters must be at least "
          f"{PENULTIMATE_PER_CONV_FILTER} (e.g. '{self.cells_per_stack}@24')")
    if self.penultimate_filters % PENULTIMATE_PER_CONV_FILTER:
      lower = (self.penultimate_filters // PENULTIMATE_PER_CONV_FILTER *
               PENULTIMATE_PER_CONV_FILTER)
      raise ConfigError(
          f"arch '{text}': penultimate filters must be a multiple of "
          f"{PENULTIMATE_PER_CONV_FILTER} (try '{self.cells_per_stack}@{lower}' "
          f"or '{self.cells_per_stack}@{lower + PENULTIMATE_PER_CONV_FILTER}')")

  @classmethod
  def parse(cls, text: "str | ArchSpec") -> "ArchSpec":
    """Parses "N@P", e.g. "6@768"; raises ConfigError quoting a bad value."""
    if isinstance(text, ArchSpec):
      return text
    match = _PATTERN.match(str(text))
    if not match:
      raise ConfigError(
          f"arch '{text}': expected 'N@P' with integers N (cells per stack) and "
          "P (penultimate filters), e.g. '6@768'")
    return cls(int(match.group(1)), int(match.group(2)))

  @property
  def num_cells(self) -> int:
    """Normal cells in the whole tower (3 stacks)."""
    return 3 * self.cells_per_stack

  @property
  def conv_filters(self) -> int:
    """F: conv filters of the first stack (doubling at each reduction)."""
    return self.penultimate_filters // PENULTIMATE_PER_CONV_FILTER

  def deeper(self, cells: int = 1) -> "ArchSpec":
    """The neighbour with `cells` more normal cells per stack."""
    return ArchSpec(self.cells_per_stack + cells, self.penultimate_filters)

  def wider(self, penultimate_filters: int = 240) -> "ArchSpec":
    """The neighbour with `penultimate_filters` more penultimate filters."""
    return ArchSpec(self.cells_per_stack,
                    self.penultimate_filters + penultimate_filters)

  @property
  def slug(self) -> str:
    """A name usable in TF scopes and file names: "6x768"."""
    return f"{self.cells_per_stack}x{self.penultimate_filters}"

  def __str__(self) -> str:
    return f"{self.cells_per_stack}@{self.penultimate_filters}"


# The NASNet-A cells of Zoph et al. (2018, Fig. 4) in state-index order
# (improve_nas/nasnet/cells.py builds them): their `h0` (the previous cell's
# output) is state 0, their `h1` (the one before) state 1.
@dataclasses.dataclass(frozen=True)
class CellSpec:
  """Blocks as (left_op, left_state, right_op, right_state) and the outputs."""

  blocks: Tuple[Tuple[str, int, str, int], ...]
  outputs: Tuple[int, ...]


NORMAL_CELL = CellSpec(
    blocks=(("sep5", 0, "sep3", 1),
            ("sep5", 1, "sep3", 1),
            ("avg3", 0, "id", 1),
            ("avg3", 1, "avg3", 1),
            ("sep3", 0, "id", 0)),
    outputs=(1, 2, 3, 4, 5, 6))

REDUCTION_CELL = CellSpec(
    blocks=(("sep5", 0, "sep7", 1),
            ("max3", 0, "sep7", 1),
            ("avg3", 0, "sep5", 1),
            ("id", 3, "avg3", 2),
            ("sep3", 2, "max3", 0)),
    outputs=(3, 4, 5, 6))
