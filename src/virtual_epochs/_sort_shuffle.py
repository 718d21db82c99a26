"""An exact shuffle for small datasets: sort the positions by keyed random values.

Trade-off: O(n log n) time and O(n) memory per pass, so only used up to ``_feistel.SMALL``
samples, where that is a few dozen microseconds and kilobytes. In exchange it reaches every
permutation (the odd ones too, which small Feistel networks cannot), with the uniformity of its
hash, which ``tests/test_permutation.py`` measures.

Each position's sort key is a keyed 32-bit hash of the position. The hash is a bijection of
32-bit values, so the keys of one pass are distinct: there are no ties, and the order is a pure
function of ``(n, keys)``. All the passes of a chunk sort together, as one flat array in which
a pass's row number sits above its 32 key bits: one 1-D sort is several times faster than a
sort along the rows of a table (and tens of times when the cores are busy).
"""

from __future__ import annotations

import torch

from ._feistel import hash_round


def permutations(n: int, keys: list[torch.Tensor]) -> torch.Tensor:
    """Return a ``(len(keys[0]), n)`` tensor: one permutation of ``range(n)`` per key set.

    Args:
        n: the number of samples.
        keys: tensors of the same length (only the first is used); element ``i`` of each keys
            pass ``i``. At most ``2**31`` passes at once.
    """
    rows = len(keys[0])
    sort_keys = hash_round(torch.arange(n, dtype=torch.int64), keys[0].unsqueeze(1))
    sort_keys.add_(torch.arange(0, rows << 32, 1 << 32, dtype=torch.int64).unsqueeze(1))
    order = torch.argsort(sort_keys.view(-1))
    return order.view(rows, n).sub_(torch.arange(0, rows * n, n, dtype=torch.int64).unsqueeze(1))
