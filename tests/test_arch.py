"""ArchSpec: parsing "N@P", derived sizes, neighbours and errors."""

import pytest

from improve_nas.errors import ConfigError
from improve_nas.nasnet.arch import ArchSpec


def test_parse_fields():
  arch = ArchSpec.parse("6@768")
  assert arch.cells_per_stack == 6
  assert arch.penultimate_filters == 768
  assert arch.num_cells == 18
  assert arch.conv_filters == 32  # 768 / 24
  assert str(arch) == "6@768"
  assert arch.slug == "6x768"


@pytest.mark.parametrize("text,cells,filters", [
    ("7@2304", 21, 96), ("1@240", 3, 10), (" 2 @ 48 ", 6, 2), ("1@24", 3, 1)])
def test_derived_sizes(text, cells, filters):
  arch = ArchSpec.parse(text)
  assert arch.num_cells == cells
  assert arch.conv_filters == filters


def test_parse_is_idempotent_and_equal():
  arch = ArchSpec.parse("6@768")
  assert ArchSpec.parse(arch) is arch
  assert ArchSpec.parse("6@768") == ArchSpec(6, 768)
  assert len({ArchSpec.parse("6@768"), ArchSpec(6, 768)}) == 1


def test_deeper_and_wider():
  arch = ArchSpec.parse("6@768")
  assert arch.deeper() == ArchSpec(7, 768)
  assert arch.deeper(2) == ArchSpec(8, 768)
  assert arch.wider() == ArchSpec(6, 1008)
  assert arch.wider(24) == ArchSpec(6, 792)
  assert arch == ArchSpec(6, 768)  # Neighbours are new objects.


def test_wider_by_non_multiple_rejected():
  with pytest.raises(ConfigError, match="multiple of 24"):
    ArchSpec.parse("6@768").wider(10)


@pytest.mark.parametrize("text,why", [
    ("6@770", "multiple of 24"),
    ("0@240", "at least 1"),
    ("x@1", "expected 'N@P'"),
    ("6@0", "at least 24"),
    ("6", "expected 'N@P'"),
    ("", "expected 'N@P'"),
    ("-1@240", "expected 'N@P'"),
])
def test_rejects_bad_values(text, why):
  with pytest.raises(ConfigError) as info:
    ArchSpec.parse(text)
  message = str(info.value)
  assert f"'{text}'" in message  # Quotes the bad value...
  assert why in message  # ... and says why.
  assert "\n" not in message
  assert isinstance(info.value, ValueError)


def test_non_multiple_suggests_neighbours():
  with pytest.raises(ConfigError) as info:
    ArchSpec.parse("6@770")
  assert "6@768" in str(info.value) and "6@792" in str(info.value)
