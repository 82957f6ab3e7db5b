"""The bundled suite has power in every family: each catalogued mistake that changes a family's
answers beyond rounding fails at least one case of that family.

On failure the message prints the power table (simulated bug | cases it passes | cases that
catch it | families without power), the table ``docs/verification.md`` shows.
"""

from __future__ import annotations

import pytest

from pnref.golden import bundled_suite_dir
from pnref.golden.deviations import CATALOGUE
from pnref.golden.power import format_power_table, simulate_power


@pytest.fixture(scope="module")
def rows():
    return simulate_power(bundled_suite_dir())


def test_every_family_catches_every_visible_mistake(rows):
    without = [row for row in rows if row.families_without_power]
    assert not without, "families without power:\n" + format_power_table(rows, detail=True)


def test_every_catalogued_mistake_fails_some_case(rows):
    caught = {row.deviation for row in rows if row.caught}
    missing = sorted({d.id for d in CATALOGUE} - caught)
    assert not missing, f"never caught: {missing}\n" + format_power_table(rows)


def test_table_lists_every_variant_once(rows):
    table = format_power_table(rows)
    lines = table.splitlines()
    assert lines[0].startswith("| simulated bug | cases it passes")
    assert len(lines) == 2 + len(rows)
    assert len({row.bug for row in rows}) == len(rows)
