"""An exact shuffle for small datasets: sort the positions by keyed random values.

Trade-off: O(n log n) time and O(n) memory per pass, so only used up to ``_feistel.SMALL``
samples, where that is a few dozen microseconds and kilobytes. In exchange it is as uniform as
its hash: sorting ``n`` independent uniform keys yields every permutation with the same
probability, including the odd ones that small Feistel networks cannot reach.

Each position's key is 63 bits from two keyed 32-bit hashes; a stable sort settles the (rare)
ties deterministically, so the order is a pure function of ``(n, keys)``.
"""

from __future__ import annotations

import torch

from ._feistel import hash_round


def permutations(n: int, keys: list[torch.Tensor]) -> torch.Tensor:
    """Return a ``(len(keys[0]), n)`` tensor: one permutation of ``range(n)`` per key set.

    Args:
        n: the number of samples.
        keys: at least two tensors of the same length; element ``i`` of each keys pass ``i``.
    """
    positions = torch.arange(n, dtype=torch.int64).unsqueeze(0)
    high = hash_round(positions, keys[0].unsqueeze(1))
    low = hash_round(positions, keys[1].unsqueeze(1))
    sort_keys = high.bitwise_left_shift_(31).bitwise_or_(low.bitwise_right_shift_(1))
    return torch.argsort(sort_keys, dim=1, stable=True)
