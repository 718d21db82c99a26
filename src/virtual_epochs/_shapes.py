"""What ``VirtualDataLoader`` recognises in a wrapped loader, without importing the tools.

Samplers and batch samplers of torchdata and Accelerate are recognised by their qualified
class names, so that neither is a dependency; the attributes read are the ones these tools
document (``batch_sampler``, ``sampler``, ``split_batches``, ``num_processes``).
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import BatchSampler

from ._protocols import Stateful

TORCHDATA_BATCH_SAMPLER = "torchdata.stateful_dataloader.sampler.BatchSampler"
TORCHDATA_RANDOM_SAMPLER = "torchdata.stateful_dataloader.sampler.RandomSampler"
ACCELERATE_BATCH_SAMPLER_SHARD = "accelerate.data_loader.BatchSamplerShard"


def set_epoch(loader: object, pass_index: int) -> None:
    """Call ``set_epoch(pass_index)`` on the loader and on its samplers and dataset that have it."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    parts = (
        loader,
        getattr(loader, "sampler", None),
        batch_sampler,
        getattr(batch_sampler, "sampler", None),
        getattr(loader, "dataset", None),
    )
    seen: set[int] = set()
    for part in parts:
        # (A runtime-checkable Protocol would say the same, a hundred times slower.)
        method = getattr(part, "set_epoch", None)
        if callable(method) and id(part) not in seen:
            seen.add(id(part))
            method(pass_index)


def is_plain_batch_sampler(batch_sampler: object) -> bool:
    """Whether ``batch_sampler`` makes fixed-size batches in order, like torch's own."""
    return type(batch_sampler) is BatchSampler or (
        qualified_name(batch_sampler) == TORCHDATA_BATCH_SAMPLER
    )


def qualified_name(obj: object) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def accelerate_shard(batch_sampler: Any) -> tuple[Any, int] | None:
    """Return ``(sampler, samples per step)`` behind Accelerate's ``BatchSamplerShard``.

    The shard iterates the whole global stream of batches and keeps every
    ``num_processes``-th one (or splits each batch, with ``split_batches``), so all processes
    together consume ``batch_size * num_processes`` samples (``batch_size`` when split) per step.
    """
    if qualified_name(batch_sampler) != ACCELERATE_BATCH_SAMPLER_SHARD:
        return None
    inner = batch_sampler.batch_sampler
    if not is_plain_batch_sampler(inner):
        return None
    batch = int(inner.batch_size)
    if not batch_sampler.split_batches:
        batch *= int(batch_sampler.num_processes)
    return inner.sampler, batch


def saves_own_state(loader: object) -> bool:
    """Whether ``loader``'s ``state_dict()`` can be trusted.

    Accelerate's prepared loaders always have ``state_dict()``, which only works when the loader
    they adapt (``base_dataloader``) is itself stateful (a ``StatefulDataLoader``).
    """
    base = getattr(loader, "base_dataloader", None)
    return base is None or isinstance(base, Stateful)


def sized(obj: object) -> int | None:
    """Return ``len(obj)``, or ``None`` where it has none."""
    try:
        return len(obj)  # type: ignore[arg-type]  # probing: anything may have a length
    except TypeError:
        return None


def set_epoch_misses_workers(loader: object) -> bool:
    """Whether ``loader``'s dataset has ``set_epoch`` but lives in persistent worker processes.

    ``set_epoch(pass)`` is called on the main process's dataset; persistent workers keep the
    copies they made at the first pass, so theirs never sees another pass.
    """
    dataset = getattr(loader, "dataset", None)
    return (
        callable(getattr(dataset, "set_epoch", None))
        and getattr(loader, "num_workers", 0) > 0
        and bool(getattr(loader, "persistent_workers", False))
    )
