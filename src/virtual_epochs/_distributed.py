"""Rank and world size discovery: the only place that looks at ``torch.distributed``.

Explicit arguments always win; the process group, when one is initialised, only supplies the
defaults. No collective is ever issued.
"""

from __future__ import annotations

import torch.distributed as dist

from ._checks import check_int


def resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Return ``(rank, world_size)``, filling ``None`` from ``torch.distributed``.

    Without an initialised process group the defaults are rank 0 of 1.

    Raises:
        TypeError: an argument is not an ``int``.
        ValueError: ``world_size < 1`` or ``rank`` outside ``[0, world_size)``.
    """
    initialised = dist.is_available() and dist.is_initialized()
    if world_size is None:
        world_size = dist.get_world_size() if initialised else 1
    else:
        check_int("world_size", world_size, minimum=1)
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    else:
        check_int("rank", rank, minimum=0)
    if rank >= world_size:
        raise ValueError(
            f"'rank' must be in [0, world_size) = [0, {world_size}) (got {rank}); "
            "pass the rank of this process among 'world_size' processes"
        )
    return rank, world_size
