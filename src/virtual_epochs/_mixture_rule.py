"""Which source a mixture draws at each position of a phase: a pure, low-discrepancy rule.

A rule maps a position ``t`` inside a phase (``0, 1, 2, ...``) to ``(source, rank)``: the
source drawn there and how many times that source was drawn at positions ``0 .. t - 1`` of the
phase. Rules are pure functions of ``(weights, t)`` with one signature, looked up by name in
``RULES`` (as Streaming looks up its shuffles); the weights are non-negative ints (see
``_phases.integer_weights``), and ``t`` may be anything up to ``2**62``.

``"sturmian_tree"`` (the only rule so far). The sources are the leaves of a balanced binary
tree. A node that receives the sub-stream of positions ``0, 1, 2, ...`` (its own count ``m``)
sends its ``m``-th position left when ``L(m + 1) > L(m)``, with
``L(m) = floor((m * a + D // 2) / D)``, ``a`` the weight under its left child and ``D`` the
weight under the node: the left child receives ``L(m)`` of the node's first ``m`` positions, a
rotation (Sturmian) sequence of slope ``a / D``, and the right child the rest, in order.

Discrepancy bound: for every prefix of ``t`` positions, source ``k`` holds ``c_k(t)`` positions
with ``|c_k(t) - t * w_k / W| <= depth_k / 2``, where ``W`` is the sum of the weights and
``depth_k`` the depth of ``k``'s leaf, at most ``ceil(log2(K))`` for ``K`` sources (``1/2``
for two sources, ``1`` for three or four, ``5`` for 1,000). Proof: ``L(m) - m a / D`` is a
multiple of ``1 / D`` in ``(c/D - 1, c/D]`` with ``c = D // 2``, so its magnitude is at most
``1/2`` (likewise for the right child, ``m - L(m)``), and a node's error reaches its child
scaled by ``a / D <= 1`` plus at most ``1/2``. The bound does not depend on ``t``.
``tests/test_mixture_rule.py`` checks it on every prefix.

Trade-off: O(depth) integer operations per position (run on whole tensors of positions at
once), O(K) memory, exact integer arithmetic with no state. The rule is periodic (each node's
split repeats after its own total weight), so when the weights sum to at most ``PERIOD_TABLE``
one period is kept as a table and a position costs a division and three gathers. Megatron's
greedy choice keeps the error under about one sample for any number of sources, but it is
sequential: position ``t`` needs the ``t`` choices before it (an index array built up front).

Arithmetic: weights sum to at most ``MAX_TOTAL = 2**31``; ``m * a`` is computed as
``(m // D) * a + ((m % D) * a + c) // D``, every product below ``2**62``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

MAX_TOTAL = 1 << 31
"""The largest sum of integer weights a rule accepts (keeps every product below ``2**62``)."""

PERIOD_TABLE = 1 << 16
"""Weights summing to at most this keep one period of the rule as a table (a cache: 1 MiB)."""


class Tree(NamedTuple):
    """A rule's precomputed tables for one set of integer weights (O(K) ints).

    Node ``i`` sends a position left with slope ``left[i] / total[i]``; leaves are self-loops
    (``left == total == 1``, both children themselves) whose source is ``source[i]``.
    """

    left: list[int]
    total: list[int]
    left_child: list[int]
    right_child: list[int]
    source: list[int]
    depth: list[int]  # per source: the depth of its leaf
    tensors: tuple[torch.Tensor, ...]
    period: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None


def build(weights: Sequence[int]) -> Tree:
    """Return the tree of ``weights`` (non-negative ints summing to ``1 .. MAX_TOTAL``).

    >>> build([1, 2, 1]).depth
    [2, 2, 1]
    """
    left: list[int] = []
    total: list[int] = []
    left_child: list[int] = []
    right_child: list[int] = []
    source: list[int] = []
    depth = [0] * len(weights)

    def node(lo: int, hi: int, level: int) -> int:
        i = len(left)
        left.append(1)
        total.append(1)
        left_child.append(i)
        right_child.append(i)
        source.append(lo)
        if hi - lo == 1:
            depth[lo] = level
            return i
        mid = (lo + hi + 1) // 2
        a, b = node(lo, mid, level + 1), node(mid, hi, level + 1)
        left[i] = sum(weights[lo:mid])
        total[i] = sum(weights[lo:hi])
        left_child[i], right_child[i] = a, b
        if total[i] == 0:  # an all-zero subtree is never reached; keep its arithmetic defined
            total[i] = 1
        return i

    node(0, len(weights), 0)
    tensors = tuple(
        torch.tensor(column, dtype=torch.int64)
        for column in (left, total, [t // 2 for t in total], left_child, right_child, source)
    )
    tree = Tree(left, total, left_child, right_child, source, depth, tensors, None)
    if total[0] <= PERIOD_TABLE:
        # The rule is periodic: every node's split repeats after its own total, so the whole
        # assignment repeats after the root's, with each source drawn weights[k] times.
        sources, ranks = tree_locate(tree, torch.arange(total[0], dtype=torch.int64))
        tree = tree._replace(
            period=(sources, ranks, torch.tensor(list(weights), dtype=torch.int64))
        )
    return tree


def _floor_left(m: int, a: int, d: int) -> int:
    """Return ``L(m) = floor((m * a + d // 2) / d)``."""
    return (m * a + d // 2) // d


def tree_counts(tree: Tree, t: int) -> list[int]:
    """Return how many of the positions ``0 .. t - 1`` each source holds.

    >>> tree_counts(build([1, 2, 1]), 8)
    [2, 4, 2]
    """
    counts = [0] * len(tree.depth)

    def visit(i: int, m: int) -> None:
        if tree.left_child[i] == i:
            counts[tree.source[i]] = m
            return
        into_left = _floor_left(m, tree.left[i], tree.total[i])
        visit(tree.left_child[i], into_left)
        visit(tree.right_child[i], m - into_left)

    visit(0, t)
    return counts


def tree_locate_int(tree: Tree, t: int) -> tuple[int, int]:
    """Return ``(source, rank)`` at phase position ``t``, in plain Python.

    >>> [tree_locate_int(build([1, 2, 1]), t)[0] for t in range(8)]
    [1, 0, 2, 1, 1, 0, 2, 1]
    """
    i, m = 0, t
    while tree.left_child[i] != i:
        a, d = tree.left[i], tree.total[i]
        before = _floor_left(m, a, d)
        if _floor_left(m + 1, a, d) > before:
            i, m = tree.left_child[i], before
        else:
            i, m = tree.right_child[i], m - before
    return tree.source[i], m


def _step(
    m: torch.Tensor, a: int | torch.Tensor, d: int | torch.Tensor, c: int | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(L(m), L(m + 1) > L(m))`` for tensors, exactly, every product below ``2**62``.

    With ``m = q d + r`` and ``y = r a + c``: ``L(m) = q a + y // d``, and the next position
    goes left when ``y % d + a >= d``.
    """
    q = torch.div(m, d, rounding_mode="floor")
    y = (m - q * d).mul_(a).add_(c)
    whole = torch.div(y, d, rounding_mode="floor")
    goes_left = y.sub_(whole * d).add_(a) >= d
    return q.mul_(a).add_(whole), goes_left


def tree_locate(tree: Tree, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(sources, ranks)`` at the phase positions ``t`` (``int64``; not consumed).

    >>> sources, ranks = tree_locate(build([1, 2, 1]), torch.arange(8))
    >>> sources.tolist(), ranks.tolist()
    ([1, 0, 2, 1, 1, 0, 2, 1], [0, 0, 0, 1, 2, 1, 1, 3])
    """
    if tree.period is not None:
        sources, ranks, weights = tree.period
        whole = torch.div(t, tree.total[0], rounding_mode="floor")
        r = t - whole * tree.total[0]
        src = sources.index_select(0, r)
        return src, whole.mul_(weights.index_select(0, src)).add_(ranks.index_select(0, r))
    left, total, half, left_child, right_child, source = tree.tensors
    levels = max(tree.depth)
    if levels == 0:
        return torch.zeros_like(t), t.clone()
    # The root is the same for every position: its numbers are plain ints, nothing gathered.
    before, goes_left = _step(t, tree.left[0], tree.total[0], tree.total[0] // 2)
    m = torch.where(goes_left, before, t - before)
    node = torch.where(goes_left, tree.left_child[0], tree.right_child[0])
    for _ in range(levels - 1):
        a = left.index_select(0, node)
        before, goes_left = _step(m, a, total.index_select(0, node), half.index_select(0, node))
        m = torch.where(goes_left, before, m.sub_(before))
        node = torch.where(
            goes_left, left_child.index_select(0, node), right_child.index_select(0, node)
        )
    return source.index_select(0, node), m


class Rule(NamedTuple):
    """A mixture rule: three pure functions of the same precomputed tables."""

    build: Callable[[Sequence[int]], Tree]
    counts: Callable[[Tree, int], list[int]]
    locate: Callable[[Tree, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    locate_int: Callable[[Tree, int], tuple[int, int]]


RULES: dict[str, Rule] = {
    "sturmian_tree": Rule(build, tree_counts, tree_locate, tree_locate_int),
}
"""Every rule, by the name a mixture's fingerprint records."""


def bound(tree: Tree) -> list[float]:
    """Return each source's discrepancy bound, ``depth_k / 2``.

    >>> bound(build([5, 3, 2]))
    [1.0, 1.0, 0.5]
    """
    return [level / 2 for level in tree.depth]
