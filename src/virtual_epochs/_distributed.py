"""Rank and world size discovery: the only place that looks at ``torch.distributed``.

Explicit arguments always win; the process group only supplies the defaults, and it is asked
when they are needed (at iteration), not when an object is built, so that a sampler built before
``init_process_group`` still shards. A process that a launcher started as one of several
(``WORLD_SIZE`` above 1 in its environment, as torchrun sets it) but that has no process group
yet when a default is needed is refused: running as rank 0 of 1 would give every rank the same
data. No collective is ever issued.
"""

from __future__ import annotations

import os

import torch.distributed as dist

from ._checks import check_int

LAUNCHER_WORLD_SIZE = "WORLD_SIZE"
"""The environment variable in which torchrun (and Lightning, Accelerate, SLURM launchers that
follow it) tells a process how many ranks the job has."""


def check_rank_arguments(rank: int | None, world_size: int | None) -> None:
    """Check explicit ``rank`` and ``world_size`` arguments (``None`` means "ask later").

    Raises:
        TypeError: an argument is not an ``int``.
        ValueError: ``world_size < 1``, ``rank < 0``, or ``rank >= world_size``.
    """
    if world_size is not None:
        check_int("world_size", world_size, minimum=1)
    if rank is not None:
        check_int("rank", rank, minimum=0)
    if rank is not None and world_size is not None:
        _check_rank_in_world(rank, world_size)


def resolve_rank(rank: int | None, world_size: int | None, *, owner: str) -> tuple[int, int]:
    """Return ``(rank, world_size)``, filling ``None`` from ``torch.distributed`` now.

    Without an initialised process group the defaults are rank 0 of 1, unless the environment
    says the process is one of several, which is refused.

    Args:
        rank: an explicit rank, or ``None``.
        world_size: an explicit world size, or ``None``.
        owner: what asks, for messages (``"InfiniteSampler"``).

    Raises:
        RuntimeError: a default is needed, no process group is initialised, and the
            environment's ``WORLD_SIZE`` is above 1.
        ValueError: ``rank`` outside ``[0, world_size)``.
    """
    if rank is not None and world_size is not None:
        return rank, world_size
    if dist.is_available() and dist.is_initialized():
        found_rank, found_world = dist.get_rank(), dist.get_world_size()
    else:
        launched = os.environ.get(LAUNCHER_WORLD_SIZE, "1").strip()
        if launched.isdigit() and int(launched) > 1:
            raise RuntimeError(
                f"{owner} needs its rank and world size, but no torch.distributed process "
                f"group is initialised, while the environment says this process is one of "
                f"{LAUNCHER_WORLD_SIZE}={launched} ranks (torchrun); running as rank 0 of 1 would "
                "give every rank the same samples. Call torch.distributed.init_process_group() "
                "before iterating (building the sampler earlier is fine), or pass rank= and "
                "world_size= explicitly"
            )
        found_rank, found_world = 0, 1
    world_size = found_world if world_size is None else world_size
    rank = found_rank if rank is None else rank
    _check_rank_in_world(rank, world_size)
    return rank, world_size


def _check_rank_in_world(rank: int, world_size: int) -> None:
    if rank >= world_size:
        raise ValueError(
            f"'rank' must be in [0, world_size) = [0, {world_size}) (got {rank}); "
            "pass the rank of this process among 'world_size' processes"
        )
