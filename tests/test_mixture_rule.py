"""The proportion bound of ``MixtureSampler``: every prefix, many weight sets, with phases.

The bound is ``MixtureSampler.bound`` (``depth_k / 2`` per phase begun, from the module
docstring of ``_mixture_rule``), checked against the user's own weights, as written, on every
prefix of up to 10**6 positions.
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from virtual_epochs import MixtureSampler
from virtual_epochs._mixture_rule import (
    PERIOD_TABLE,
    RULES,
    build,
    tree_counts,
    tree_locate,
    tree_locate_int,
)
from virtual_epochs._phases import integer_weights

BIG = 10**9 + 7  # sources this large walk a Feistel order: cheap, so the test is about the rule


def sources_of(mix: MixtureSampler, length: int) -> torch.Tensor:
    """Return the source of each of the first ``length`` positions, from the stream itself."""
    stream = torch.tensor(list(itertools.islice(mix, length)), dtype=torch.int64)
    ends = torch.tensor(list(itertools.accumulate(mix.sizes)), dtype=torch.int64)
    return torch.searchsorted(ends, stream, right=True)


def worst_excess(
    mix: MixtureSampler,
    weights: list[Any],
    phases: list[tuple[int, list[Any]]],
    length: int,
) -> float:
    """Return ``max over k and prefixes of |count - target| - bound[k]`` (<= 0 when it holds)."""
    sources = sources_of(mix, length)
    starts = [0] + [start for start, _ in phases] + [length]
    shares = [
        [float(Fraction(w) / sum(map(Fraction, ws))) for w in ws]
        for ws in [weights, *(w for _, w in phases)]
    ]
    prefix = torch.arange(1, length + 1, dtype=torch.float64)
    worst = float("-inf")
    for k, bound in enumerate(mix.bound):
        counts = (sources == k).cumsum(0).to(torch.float64)
        target = torch.zeros(length, dtype=torch.float64)
        before = 0.0
        for j, share in enumerate(shares):
            lo, hi = min(starts[j], length), min(starts[j + 1], length)
            if lo >= hi:
                break
            target[lo:hi] = before + share[k] * (prefix[lo:hi] - lo)
            before += share[k] * (hi - lo)
        worst = max(worst, float((counts - target).abs().max()) - bound)
    return worst


weight_sets = st.lists(
    st.one_of(
        st.integers(0, 1000),
        st.integers(1, 10_000).map(lambda x: x / 100),  # decimals such as 0.35, as users write them
    ),
    min_size=1,
    max_size=12,
).filter(any)


@st.composite
def schedules(draw: st.DrawFn) -> tuple[list[Any], list[tuple[int, list[Any]]], int]:
    weights = draw(weight_sets)
    k = len(weights)
    length = draw(st.sampled_from([10**6, 300_000, 20_000]))
    starts = sorted(draw(st.sets(st.integers(1, length - 1), max_size=3)))
    phases = []
    for start in starts:
        phase = draw(st.lists(st.integers(0, 50), min_size=k, max_size=k).filter(any))
        phases.append((start, phase))
    return weights, phases, length


@settings(max_examples=12, deadline=None)
@given(schedules(), st.integers(0, 2**64 - 1))
def test_every_prefix_holds_each_source_within_the_bound(
    schedule: tuple[list[Any], list[tuple[int, list[Any]]], int], seed: int
) -> None:
    weights, phases, length = schedule
    mix = MixtureSampler([BIG] * len(weights), weights, phases=phases, seed=seed)
    assert worst_excess(mix, weights, phases, length) <= 1e-6


def test_the_bound_for_three_sources_is_one_sample_and_is_reached() -> None:
    weights = [0.5, 0.3, 0.2]
    mix = MixtureSampler([BIG] * 3, weights)
    assert mix.bound == [1.0, 1.0, 0.5]
    assert -0.5 - 1e-9 <= worst_excess(mix, weights, [], 10**6) <= 1e-9


def test_a_thousand_sources_stay_within_five_samples() -> None:
    generator = torch.Generator().manual_seed(0)
    weights = torch.randint(0, 100, (1000,), generator=generator).tolist()
    mix = MixtureSampler([BIG] * 1000, weights)
    assert max(mix.bound) == 5.0
    assert worst_excess(mix, weights, [], 30_000) <= 1e-6


def test_weights_that_do_not_reduce_to_small_ints_are_off_by_at_most_2_to_the_minus_31() -> None:
    weights = [1, 2**40 + 1, 3**20]  # sum above 2**31 after reduction: rounded to parts of 2**31
    ints, exact = integer_weights(weights)
    assert not exact
    assert sum(ints) <= 2**31
    assert all(ints)
    mix = MixtureSampler([BIG] * 3, weights)
    assert worst_excess(mix, weights, [], 10**5) <= 1e-6 + 10**5 * 3 * 2**-31


@pytest.mark.parametrize(
    "weights",
    [[1], [0, 1], [1, 0, 0, 5], [3, 3, 3, 3, 3], [7, 1, 1, 1, 1], [70001, 3, 0, 9], [2**30, 1]],
)
def test_the_scalar_rule_equals_the_tensor_rule_and_the_counts(weights: list[int]) -> None:
    tree = build(weights)
    t = torch.arange(3000) * 7 + 2**61  # far positions too: the products must stay exact
    sources, ranks = tree_locate(tree, t)
    assert [tree_locate_int(tree, int(x)) for x in t] == list(
        zip(sources.tolist(), ranks.tolist(), strict=True)
    )
    dense_sources, dense_ranks = tree_locate(tree, torch.arange(500))
    for k in range(len(weights)):
        mine = (dense_sources == k).nonzero().squeeze(1)
        assert dense_ranks[mine].tolist() == list(range(mine.numel()))  # ranks count up
        assert tree_counts(tree, 500)[k] == mine.numel()
    assert RULES["sturmian_tree"].locate is tree_locate
    # A period table is only a cache of the rule: the same answers without it.
    assert (tree.period is None) == (sum(weights) > PERIOD_TABLE)
    uncached = tree._replace(period=None)
    for got, want in zip(tree_locate(uncached, t), (sources, ranks), strict=True):
        assert torch.equal(got, want)


def test_zero_weights_are_never_drawn() -> None:
    mix = MixtureSampler([BIG, 0, BIG, BIG], [2, 0, 0, 1], phases=[(5000, [0, 0, 1, 1])])
    sources = sources_of(mix, 20_000)
    assert (sources[:5000] != 1).all()
    assert (sources[:5000] != 2).all()
    assert (sources[5000:] >= 2).all()
