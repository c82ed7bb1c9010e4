"""Turns search records into the per-iteration table users read."""

from __future__ import annotations

from typing import List, Optional

from improve_nas.search import IterationRecord

__all__ = ["format_table"]

_HEADER = ("iter", "candidate", "arch", "params", "sel. loss", "chosen",
           "ens. params", "test acc")


def format_table(records: List[IterationRecord],
                 ended: Optional[str] = None) -> str:
  """One row per candidate; the chosen row also shows the ensemble."""
  rows = [_HEADER]
  for r in records:
    for x in r.candidates:
      chosen = x.name == r.chosen
      rows.append((
          str(r.iteration), x.name, x.arch, f"{x.params:,}",
          "-" if x.selection_loss is None else f"{x.selection_loss:.4f}",
          "*" if chosen else "",
          f"{r.ensemble_params:,}" if chosen else "",
          f"{r.test_accuracy:.4f}" if chosen else ""))
  widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
  lines = ["  ".join(cell.ljust(w) if i in (1, 2, 5) else cell.rjust(w)
                     for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
           for row in rows]
  lines.insert(1, "-" * len(lines[0]))
  if records:
    last = records[-1]
    lines.append(
        f"final ensemble: {' + '.join(last.ensemble_archs)} "
        f"({last.ensemble_params:,} parameters), test accuracy "
        f"{last.test_accuracy:.4f}")
  if ended:
    lines.append(ended)
  return "\n".join(lines)
