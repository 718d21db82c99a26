"""A keyed Feistel network over a mixed-radix domain: random access into a permutation.

Trade-off: O(1) memory and O(1) work for the index at any position, whatever the number of
samples, for about 70 integer operations per index (run on whole tensors of positions at
once). Small domains are where Feistel networks are weakest (they reach only part of the
symmetric group: for many ``n`` nearly every pass has the same parity), so ``_permutation`` uses
this network only above ``SMALL``; the statistical tests in ``tests/test_permutation.py`` check
the shuffle above it, and ``docs/shuffle-quality.md`` says why parity cannot reach training.

The domain is ``[0, 2**k * b)`` with ``k`` about half the bit length of ``n`` and
``b = ceil(n / 2**k)`` (after Black and Rogaway, "Ciphers with arbitrary finite domains"). A
value is the pair ``(x >> k, x & (2**k - 1))`` in ``Z_b x Z_(2**k)``. A double round adds a keyed
hash of the low part to the high part modulo ``b``, then xors a keyed hash of the new high part
into the low part; each step is invertible, so the network permutes the domain. The domain
exceeds ``n`` by less than ``2**k``, about ``sqrt(2n)``: the rare value that lands at or above
``n`` is encrypted again until it falls below (cycle walking), which turns the permutation of
the domain into one of ``[0, n)``.

The tensor and the Python-int versions compute the same function (a test checks it); every
product stays below ``2**63``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._bits import HASH_MUL as _HASH_MUL
from ._bits import M32 as _M32

ROUNDS = 6
"""Feistel rounds (three double rounds); ``tests/test_permutation.py`` shows 6 is enough."""

SMALL = 1024
"""Below or at this many samples, ``_permutation`` uses ``_swap_or_not`` instead."""

_ROUND_MUL = 0x2C1B3C6D  # odd, < 2**31: a product with a 32-bit value stays below 2**63
_WALK_IN_PYTHON = 32  # cycle-walk this few values one by one: tensor calls cost microseconds


def domain(n: int) -> tuple[int, int]:
    """Return ``(k, b)``: the network permutes ``[0, 2**k * b)``, the smallest such range >= n.

    ``b <= 2**31`` (``k`` grows past half the bits above ``n = 2**62``), so that the products
    of a hash and ``b`` in ``encrypt`` stay below ``2**63``.
    """
    bits = (n - 1).bit_length()
    k = max(1, bits // 2, bits - 31)
    return k, -(-n // (1 << k))


def hash_round(v: torch.Tensor, key: int | torch.Tensor) -> torch.Tensor:
    """Return a keyed 32-bit hash of ``v`` (values below ``2**32``), as a new tensor."""
    h = v ^ key
    h.mul_(_ROUND_MUL).bitwise_and_(_M32)
    h.bitwise_xor_(h >> 15)
    return h.mul_(_HASH_MUL).bitwise_and_(_M32)


def hash_round_int(v: int, key: int) -> int:
    """Return ``hash_round`` of one Python int."""
    h = (v ^ key) * _ROUND_MUL & _M32
    return (h ^ (h >> 15)) * _HASH_MUL & _M32


Shape = int | torch.Tensor
"""A domain parameter (``k`` or ``b``): one for all values, or one per value."""


def encrypt(
    x: torch.Tensor, k: Shape, b: Shape, keys: Sequence[int | torch.Tensor]
) -> torch.Tensor:
    """Apply the network to ``x`` (values in ``[0, 2**k * b)``; consumed) with ``ROUNDS`` keys.

    ``k`` and ``b`` are ints, or tensors of one value per element of ``x`` (``permute_many``).
    """
    high = x >> k
    low = x.bitwise_and_((1 << k) - 1)
    for i in range(0, ROUNDS, 2):
        high.add_(hash_round(low, keys[i]).mul_(b).bitwise_right_shift_(32)).sub_(b)
        high.add_((high >> 63).bitwise_and_(b))  # back into [0, b): add b where negative
        low.bitwise_xor_(hash_round(high, keys[i + 1]).bitwise_right_shift_(32 - k))
    return high.bitwise_left_shift_(k).bitwise_or_(low)


def encrypt_int(x: int, k: int, b: int, keys: list[int]) -> int:
    """Return ``encrypt`` of one Python int."""
    high, low = x >> k, x & ((1 << k) - 1)
    for i in range(0, ROUNDS, 2):
        high = (high + (hash_round_int(low, keys[i]) * b >> 32)) % b
        low ^= hash_round_int(high, keys[i + 1]) >> (32 - k)
    return (high << k) | low


def permute(offsets: torch.Tensor, n: int, keys: Sequence[int | torch.Tensor]) -> torch.Tensor:
    """Return ``perm[offsets]`` for the permutation of ``range(n)`` keyed by ``keys``.

    Args:
        offsets: ``int64`` positions inside a pass, each in ``[0, n)``; consumed.
        n: the number of samples, at least 2.
        keys: ``ROUNDS`` ints shared by all offsets, or ``ROUNDS`` tensors with one key per
            offset.
    """
    k, b = domain(n)
    out = encrypt(offsets, k, b, keys)
    todo = torch.nonzero(out >= n).squeeze(1)
    while todo.numel() > _WALK_IN_PYTHON:
        # index_select and index_copy_: advanced indexing is far slower on CPU.
        sub_keys = [
            key.index_select(0, todo) if isinstance(key, torch.Tensor) else key for key in keys
        ]
        walked = encrypt(out.index_select(0, todo), k, b, sub_keys)
        out.index_copy_(0, todo, walked)
        todo = todo[walked >= n]
    if todo.numel():
        # The last few, one by one in Python, read and written with one tensor call per key.
        count = todo.numel()
        columns = [
            key.index_select(0, todo).tolist() if isinstance(key, torch.Tensor) else [key] * count
            for key in keys
        ]
        values = out.index_select(0, todo).tolist()
        for j, own in enumerate(zip(*columns, strict=True)):
            while values[j] >= n:
                values[j] = encrypt_int(values[j], k, b, list(own))
        out.index_copy_(0, todo, torch.tensor(values, dtype=torch.int64))
    return out


def permute_many(
    offsets: torch.Tensor,
    n: torch.Tensor,
    k: torch.Tensor,
    b: torch.Tensor,
    keys: Sequence[torch.Tensor],
) -> torch.Tensor:
    """Return ``permute`` of each offset in its own domain: one ``n`` and key set per element.

    For a mixture, whose positions belong to many sources at once: ``n``, ``k``, ``b`` (from
    ``domain(n)``) and the ``ROUNDS`` keys are tensors with one value per offset. Each element
    gets exactly what ``permute`` with its own ``n`` and keys would give.
    """
    out = encrypt(offsets, k, b, keys)
    todo = torch.nonzero(out >= n).squeeze(1)
    while todo.numel():
        sub_keys = [key.index_select(0, todo) for key in keys]
        walked = encrypt(
            out.index_select(0, todo), k.index_select(0, todo), b.index_select(0, todo), sub_keys
        )
        out.index_copy_(0, todo, walked)
        todo = todo[walked >= n.index_select(0, todo)]
    return out


def permute_int(offset: int, n: int, keys: list[int]) -> int:
    """Return ``permute`` of one Python int."""
    k, b = domain(n)
    value = encrypt_int(offset, k, b, keys)
    while value >= n:
        value = encrypt_int(value, k, b, keys)
    return value
