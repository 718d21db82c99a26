"""The sample order as a pure function of ``(n, seed, shuffle, position)``.

Global sample position ``g`` holds dataset index ``perm(seed, p)[g % n]`` for pass
``p = g // n``, or ``g % n`` without shuffling. Every pass is its own permutation of
``range(n)``; nothing is materialised beyond one chunk of positions, and nothing reads or
advances a global random state.

Two algorithms share the work (each module states its trade-off):

- up to ``_feistel.SMALL`` samples, ``_swap_or_not``: a swap-or-not network, O(1) per position
  (it replaced a sort of the whole pass, whose cost per index grew with ``n`` log ``n`` when
  every index of a rank lands in a pass of its own: with many ranks, or in a mixture);
- above, ``_feistel``: a keyed Feistel network, O(1) per position.

Both are keyed from the seed (SplitMix64) and the pass index (a 32-bit integer hash):
``pass_keys`` gives a Feistel pass its ``ROUNDS`` words, ``pass_key`` a small pass its one word
(the first of them). Both are computed the same way for a Python int and an ``int64`` tensor of
pass indices, so that a chunk of positions that spans several passes is done in one go.
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from typing import NamedTuple, TypeVar

import torch

from . import _feistel, _swap_or_not
from ._bits import HASH_MUL as _HASH_MUL
from ._bits import M32 as _M32
from ._bits import M64 as _M64

MAX_POSITION = (1 << 63) - 1
"""Positions (and so ``n``) must stay below ``2**63``: they are ``int64`` here."""

_FEW_PASSES = 4  # up to this many passes in a chunk, one segment per pass
_FEW_PASSES_MIN = 256  # ... when the chunk is big enough for the segments to pay

MAX_START = 1 << 62
"""Where a stream may start (or be resumed) at most: ``2**62`` more positions fit in ``int64``."""


PassIndex = TypeVar("PassIndex", int, torch.Tensor)


def splitmix64(x: int) -> int:
    """Return the SplitMix64 output for state ``x``."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def hash32(x: PassIndex) -> PassIndex:
    """Mix a 32-bit value into a 32-bit value (a bijection of ``[0, 2**32)``)."""
    x = ((x >> 16) ^ x) * _HASH_MUL & _M32
    x = ((x >> 16) ^ x) * _HASH_MUL & _M32
    return (x >> 16) ^ x


@lru_cache(maxsize=64)
def _salts(seed: int) -> tuple[tuple[int, int], ...]:
    """Return two 32-bit salts per Feistel round, derived from ``seed``."""
    out = []
    state = seed
    for _ in range(_feistel.ROUNDS):
        state = splitmix64(state)
        out.append((state & _M32, state >> 32))
    return tuple(out)


def pass_keys(seed: int, pass_index: PassIndex) -> list[PassIndex]:
    """Return the round keys of pass ``pass_index``: an int, or an ``int64`` tensor of them.

    >>> pass_keys(0, 3) == [int(key) for key in pass_keys(0, torch.tensor(3))]
    True
    """
    low = pass_index & _M32
    high = pass_index >> 32
    return [hash32(hash32(low ^ s0) ^ high ^ s1) for s0, s1 in _salts(seed)]


def pass_key(seed: int, pass_index: PassIndex) -> PassIndex:
    """Return the one key of pass ``pass_index`` for small datasets: ``pass_keys(...)[0]``.

    >>> pass_key(5, 9) == pass_keys(5, 9)[0]
    True
    """
    s0, s1 = _salts(seed)[0]
    return hash32(hash32((pass_index & _M32) ^ s0) ^ (pass_index >> 32) ^ s1)


def index_at(position: int, *, n: int, seed: int, shuffle: bool) -> int:
    """Return the dataset index at global sample ``position``, in plain Python.

    >>> [index_at(g, n=4, seed=0, shuffle=False) for g in range(6)]
    [0, 1, 2, 3, 0, 1]
    >>> sorted(index_at(g, n=5, seed=7, shuffle=True) for g in range(10, 15))
    [0, 1, 2, 3, 4]
    """
    if not 0 <= position <= MAX_POSITION:
        raise OverflowError(f"sample positions must be in [0, 2**63) (got {position})")
    pass_index, offset = divmod(position, n)
    if not shuffle or n == 1:
        return offset
    if n <= _feistel.SMALL:
        keys = _swap_or_not.round_keys(pass_key(seed, pass_index))
        return _swap_or_not.permute_int(offset, n, keys)  # type: ignore[arg-type]  # all ints
    return _feistel.permute_int(offset, n, pass_keys(seed, pass_index))


def indices(
    first: int, stride: int, count: int, *, n: int, seed: int, shuffle: bool
) -> torch.Tensor:
    """Return the dataset indices at global positions ``first + stride * j`` for ``j < count``.

    The vectorised form of ``index_at``, for chunks of a rank's positions.

    >>> indices(3, 1, 5, n=5, seed=0, shuffle=False).tolist()
    [3, 4, 0, 1, 2]
    >>> indices(10, 2, 5, n=5, seed=0, shuffle=True).tolist() == [
    ...     index_at(g, n=5, seed=0, shuffle=True) for g in range(10, 20, 2)]
    True
    """
    last = first + stride * (count - 1)
    if first < 0 or last > MAX_POSITION:
        raise OverflowError(f"sample positions must be in [0, 2**63) (got {first} to {last})")
    positions = torch.arange(count, dtype=torch.int64).mul_(stride).add_(first)
    return _indices_of(positions, first, last, n=n, seed=seed, shuffle=shuffle)


def indices_of(positions: torch.Tensor, *, n: int, seed: int, shuffle: bool) -> torch.Tensor:
    """Return the dataset indices at ``positions``: an ``int64`` tensor, not decreasing.

    The form of ``indices`` for positions that are not evenly spaced (a mixture's positions
    within one source); ``positions`` is consumed.

    >>> indices_of(torch.tensor([0, 1, 7, 9]), n=5, seed=0, shuffle=False).tolist()
    [0, 1, 2, 4]
    >>> indices_of(torch.tensor([3, 8, 40]), n=5, seed=2, shuffle=True).tolist() == [
    ...     index_at(g, n=5, seed=2, shuffle=True) for g in (3, 8, 40)]
    True
    """
    if positions.numel() == 0:
        return positions
    first, last = int(positions[0]), int(positions[-1])
    if first < 0 or last > MAX_POSITION:
        raise OverflowError(f"sample positions must be in [0, 2**63) (got {first} to {last})")
    return _indices_of(positions, first, last, n=n, seed=seed, shuffle=shuffle)


def _indices_of(
    positions: torch.Tensor, first: int, last: int, *, n: int, seed: int, shuffle: bool
) -> torch.Tensor:
    """``indices_of`` once the first and last positions are known and checked."""
    count = positions.numel()
    first_pass = first // n
    last_pass = last // n
    if shuffle and 1 < last_pass - first_pass + 1 <= _FEW_PASSES and count >= _FEW_PASSES_MIN:
        # A few passes: one segment per pass, each with its keys as plain ints (the cheapest
        # path), rather than keys gathered per position.
        bounds = torch.arange(first_pass + 1, last_pass + 1, dtype=torch.int64).mul_(n)
        cuts = [0, *torch.searchsorted(positions, bounds).tolist(), count]
        return torch.cat(
            [
                _indices_of(
                    positions[a:b],
                    int(positions[a]),
                    int(positions[b - 1]),
                    n=n,
                    seed=seed,
                    shuffle=True,
                )
                for a, b in itertools.pairwise(cuts)
                if b > a
            ]
        )
    if first_pass == last_pass:
        offsets = positions.sub_(first_pass * n)
        passes = None
    else:
        passes = torch.div(positions, n, rounding_mode="floor")
        offsets = positions.sub_(passes * n)
    if not shuffle or n == 1:
        return offsets
    # Gathers use index_select: advanced indexing (``t[rows]``) is several times slower on CPU,
    # and much slower still when the cores are busy.
    sparse = passes is not None and last_pass - first_pass >= count  # a stride above n
    if n <= _feistel.SMALL:
        if passes is None:
            small_keys = _swap_or_not.round_keys(pass_key(seed, first_pass))
        elif sparse:
            small_keys = _swap_or_not.round_keys(pass_key(seed, passes))
        else:
            # Round keys per distinct pass, gathered per position.
            distinct = torch.arange(first_pass, last_pass + 1, dtype=torch.int64)
            rows = passes.sub_(first_pass)
            small_keys = [
                key.index_select(0, rows)  # type: ignore[union-attr]  # tensors here
                for key in _swap_or_not.round_keys(pass_key(seed, distinct))
            ]
        return _swap_or_not.permute(offsets, n, small_keys)
    if passes is None:
        return _feistel.permute(offsets, n, pass_keys(seed, first_pass))
    if sparse:
        # Hash each position's own pass.
        return _feistel.permute(offsets, n, pass_keys(seed, passes))
    # Keys per distinct pass, gathered per position: far fewer hashes than positions.
    distinct = torch.arange(first_pass, last_pass + 1, dtype=torch.int64)
    rows = passes.sub_(first_pass)
    keys = [key.index_select(0, rows) for key in pass_keys(seed, distinct)]
    return _feistel.permute(offsets, n, keys)


class Sources(NamedTuple):
    """Per-source tables for ``indices_many``: sizes, seeds, and their Feistel parameters.

    ``n``, ``k``, ``b`` and ``salts`` are ``int64`` tensors with one value per source (``k``
    and ``b`` from ``_feistel.domain``, ``salts`` the ``ROUNDS`` pairs that ``pass_keys``
    derives from a seed).
    """

    sizes: list[int]
    seeds: list[int]
    n: torch.Tensor
    k: torch.Tensor
    b: torch.Tensor
    salts: list[tuple[torch.Tensor, torch.Tensor]]
    large: torch.Tensor  # bool: the source has more than ``_feistel.SMALL`` samples


def sources(sizes: list[int], seeds: list[int]) -> Sources:
    """Return the tables of sources of ``sizes`` samples, each shuffled with its own seed."""
    domains = [_feistel.domain(max(n, 2)) for n in sizes]
    per_seed = [_salts(seed) for seed in seeds]
    salts = [
        (
            torch.tensor([s[r][0] for s in per_seed], dtype=torch.int64),
            torch.tensor([s[r][1] for s in per_seed], dtype=torch.int64),
        )
        for r in range(_feistel.ROUNDS)
    ]
    return Sources(
        sizes,
        seeds,
        torch.tensor(sizes, dtype=torch.int64),
        torch.tensor([k for k, _ in domains], dtype=torch.int64),
        torch.tensor([b for _, b in domains], dtype=torch.int64),
        salts,
        torch.tensor([n > _feistel.SMALL for n in sizes]),
    )


def indices_many(positions: torch.Tensor, owners: torch.Tensor, table: Sources) -> torch.Tensor:
    """Return each source's own dataset index at ``positions`` (of source ``owners[j]``).

    Element ``j`` is ``index_at(positions[j], n=sizes[owner], seed=seeds[owner],
    shuffle=True)``: one vectorised network for all the sources above ``_feistel.SMALL``
    samples at once, whatever their number, and ``indices_of`` for each smaller one. The
    positions of one source must not decrease.

    >>> table = sources([5, 3000, 10**9], [1, 2, 3])
    >>> got = indices_many(torch.tensor([7, 9, 4, 10**12]), torch.tensor([1, 0, 1, 2]), table)
    >>> got.tolist() == [index_at(g, n=n, seed=s, shuffle=True)
    ...     for g, n, s in [(7, 3000, 2), (9, 5, 1), (4, 3000, 2), (10**12, 10**9, 3)]]
    True
    """
    n = table.n.index_select(0, owners)
    passes = torch.div(positions, n, rounding_mode="floor")
    out = positions - passes * n
    large = torch.nonzero(table.large.index_select(0, owners)).squeeze(1)
    if large.numel():
        who = owners.index_select(0, large)
        which = passes.index_select(0, large)
        low, high = which & _M32, which >> 32
        keys = [
            hash32(hash32(low ^ s0.index_select(0, who)) ^ high ^ s1.index_select(0, who))
            for s0, s1 in table.salts
        ]
        out.index_copy_(
            0,
            large,
            _feistel.permute_many(
                out.index_select(0, large),
                n.index_select(0, large),
                table.k.index_select(0, who),
                table.b.index_select(0, who),
                keys,
            ),
        )
    if large.numel() < positions.numel():
        small = torch.nonzero(~table.large.index_select(0, owners)).squeeze(1)
        small_owners = owners.index_select(0, small)
        for source in torch.unique(small_owners).tolist():
            rows = small.index_select(0, torch.nonzero(small_owners == source).squeeze(1))
            out.index_copy_(
                0,
                rows,
                indices_of(
                    positions.index_select(0, rows),
                    n=table.sizes[source],
                    seed=table.seeds[source],
                    shuffle=True,
                ),
            )
    return out
