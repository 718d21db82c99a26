"""Swap-or-not: random access into a permutation of a small ``range(n)``, for any ``n``.

Trade-off: O(1) memory and ``ROUNDS`` cheap rounds for the index at any position, whatever the
access pattern, where an exact shuffle of the whole pass (sorting ``n`` keys) costs O(n log n)
for each pass that a position falls in: with many ranks, or a small source in a mixture, each
index of a small dataset lands in a pass of its own, and sorting a pass per index cost about
300 times a Feistel index. A round costs about as much as a Feistel round and twice as many
are needed, so an index costs about 4 to 6 times a large dataset's. Used up to
``_feistel.SMALL`` samples, where a Feistel network is weakest (few bits per half, one parity
for most ``n``).

Each round (after Hoang, Morris and Rogaway, "An enciphering scheme based on a card shuffle",
2012) draws ``K`` in ``[0, n)`` from its round key, pairs every ``x`` with ``K - x (mod n)``, and
swaps each pair or not by one keyed hash bit of the pair (its larger member). A round is an
involution made of disjoint transpositions, so the network permutes ``range(n)`` directly (no
cycle walking, no domain larger than ``n``), and it reaches both parities. The position of one
sample is uniform after its first swap; ``tests/test_permutation.py`` checks the rest (all
``n!`` orders equally likely for ``n <= 5``, pairs, passes, seeds, parity) against
``torch.randperm``.

A sample that no round swaps stays where it was (probability ``2**-ROUNDS``, not small
beside ``1 / n`` at ``n = 1024``), so a keyed rotation by ``c`` in ``[0, n)`` ends the network:
each sample's position in a pass is then exactly uniform whatever the rounds did.

A pass is keyed by one 32-bit word (the first of ``_permutation.pass_keys``), from which each
round's key is hashed with its own constant.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._bits import HASH_MUL as _HASH_MUL
from ._bits import M32 as _M32
from ._feistel import _ROUND_MUL, hash_round, hash_round_int

ROUNDS = 12
"""Rounds of the network. The battery of ``tests/test_permutation.py`` passes from 8 on, but
with 300,000 passes the law of the 24 orders of ``n = 4`` is still visibly off at 8 and 10
rounds (chi-square z = 48 and 6.5) and not at 12 (z = 1.7; ``n = 5, 6``: z = -0.7, 0.2)."""

_HALF = 1 << 31
_ROUND_SALTS = tuple((0x9E3779B9 * (r + 1)) & _M32 for r in range(ROUNDS + 1))


def round_keys(key: int | torch.Tensor) -> list[int | torch.Tensor]:
    """Return the ``ROUNDS + 1`` keys of a pass keyed ``key`` (an int, or a tensor of them).

    One per round, then the rotation's.

    >>> round_keys(7) == [int(k) for k in round_keys(torch.tensor(7))]
    True
    """
    if isinstance(key, torch.Tensor):
        return [hash_round(key, salt) for salt in _ROUND_SALTS]
    return [hash_round_int(key, salt) for salt in _ROUND_SALTS]


def permute(offsets: torch.Tensor, n: int, keys: Sequence[int | torch.Tensor]) -> torch.Tensor:
    """Return ``perm[offsets]`` for the permutation of ``range(n)`` keyed by ``keys``.

    Args:
        offsets: ``int64`` positions inside a pass, each in ``[0, n)``; consumed.
        n: the number of samples, ``2 <= n < 2**31``.
        keys: ``round_keys`` of the pass, ints shared by all offsets or tensors of one key per
            offset.

    >>> permute(torch.arange(6), 6, round_keys(99)).sort().values.tolist()
    [0, 1, 2, 3, 4, 5]
    """
    x = offsets
    for key in keys[:-1]:
        partner = torch.sub((key * n) >> 32, x)  # the pivot, in [0, n), minus x
        partner.add_((partner >> 63).bitwise_and_(n))  # modulo n
        h = torch.maximum(x, partner).bitwise_xor_(key)  # the pair's larger member, keyed
        h.mul_(_ROUND_MUL).bitwise_and_(_M32)
        h.bitwise_xor_(h >> 15).mul_(_HASH_MUL).bitwise_and_(_M32)
        x = torch.where(h >= _HALF, partner, x)  # the hash's top bit
    # A keyed rotation last: every sample's position in the pass is then exactly uniform.
    x.add_((keys[-1] * n) >> 32)
    return x.sub_((x >= n).long().mul_(n))


def permute_int(offset: int, n: int, keys: Sequence[int]) -> int:
    """Return ``permute`` of one Python int."""
    x = offset
    for key in keys[:-1]:
        partner = ((key * n) >> 32) - x
        partner %= n
        if hash_round_int(max(x, partner), key) >> 31:
            x = partner
    return (x + ((keys[-1] * n) >> 32)) % n
