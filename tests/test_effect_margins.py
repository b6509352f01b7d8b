"""Every bound of an effect test rests on a measurement over the kernel matrix that meets the margin rule
(tests/effects.py; ``make test-portability`` remeasures, ``python tests/portability.py --record`` records)."""

import effects
import pytest
from portability import MATRIX

RECORD = effects.recorded()


def test_every_bound_was_measured_and_nothing_else():
    assert set(RECORD["effects"]) == set(effects.BOUNDS)


@pytest.mark.parametrize("name", effects.BOUNDS)
def test_bound_meets_the_margin_rule_over_the_matrix(name):
    bound, measured = effects.BOUNDS[name], RECORD["effects"][name]
    values = measured["values"]
    seeds = RECORD["seeds"].split(",")
    assert {k.rsplit(" / seed ", 1)[0] for k in values} == set(MATRIX), "not measured in every matrix entry"
    assert len(seeds) >= 3 and len(values) == len(MATRIX) * len(seeds)
    worst = min(bound.margin(v) for v in values.values())
    spread = bound.spread(list(values.values()))
    assert worst >= effects.RULE * spread, (
        f"{name}: margin {worst:.4g} to the bound {bound.op} {bound.value} is less than {effects.RULE:g} × the spread "
        f"{spread:.4g}"
    )
