"""The latency histogram: its slot lookup table gives exactly the slots of the arithmetic."""

from __future__ import annotations

import random

from jrpc_unix._service.stats import _SUB, Histogram


def slot_by_arithmetic(ns: int) -> int:
    if ns < _SUB:
        return ns
    exp = ns.bit_length() - 4  # the top 4 bits: 1 + 3 bits of sub-bucket
    return (exp + 1) * _SUB + ((ns >> exp) & (_SUB - 1))


def test_every_latency_lands_in_its_slot() -> None:
    rng = random.Random(17)
    values = [*range(0, 140_000), *(rng.randrange(1 << 45) for _ in range(20_000))]
    for ns in [*range(0, 300), 1 << 17, (1 << 17) - 1, *rng.sample(values, 3_000)]:
        one = Histogram()
        one.add(ns)
        assert one.slots[slot_by_arithmetic(ns)] == 1 == one.count, ns
    expected = [0] * len(Histogram().slots)
    for ns in values:
        expected[slot_by_arithmetic(ns)] += 1
    hist = Histogram()
    for ns in values:
        hist.add(ns)
    assert hist.slots == expected
    assert hist.count == len(values)
    assert hist.total_ns == sum(values)


def test_percentiles_read_the_slots() -> None:
    hist = Histogram()
    assert hist.count == 0
    assert hist.percentile(0.5) == 0.0
    for ns in (1_000, 2_000, 3_000, 1_000_000):
        hist.add(ns)
    assert hist.count == 4
    assert 900 <= hist.percentile(0.25) <= 1_100
    assert 900_000 <= hist.percentile(1.0) <= 1_100_000
