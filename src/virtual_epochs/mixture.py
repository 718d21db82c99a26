"""``MixtureSampler``: an endless, sharded, checkpointable stream over weighted sources.

Global position ``g`` maps to a source and a position within that source by a pure,
low-discrepancy rule (``_mixture_rule``) under a weight schedule (``_phases``); each source then
walks its own endless ``InfiniteSampler`` order (``_permutation``) with its own seed. The
sampler itself holds only where the next iteration starts, so everything ``InfiniteSampler``
offers carries over: O(1) seek, sharding by global position, elastic resume.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterator, Mapping, Sequence, Sized
from typing import Any

import torch
from torch.utils.data import ConcatDataset, Sampler

from . import _permutation, _phases, _state
from ._checks import check_int, check_position, check_seed, describe
from ._distributed import check_rank_arguments, resolve_rank

RULE = "sturmian_tree"
"""The rule of ``_mixture_rule.RULES`` that this sampler uses (recorded in its fingerprint)."""

_FIRST_CHUNK = 8  # computed in plain Python: the first index comes in well under a millisecond
_SCALAR_CHUNK = 8  # chunks up to this size skip the tensors (a few microseconds an index)
_MAX_CHUNK = 32768
_MASKED_SOURCES = 16  # up to this many sources in a chunk, one by one; above, all at once
_MAX_SIZE = 1 << 62

SIZES = "sizes"
WEIGHTS = "weights"
PHASE_STARTS = "phase_starts"
SEED = "seed"
RULE_KEY = "rule"


def _check_any_position(value: Any) -> int:
    """Return ``value`` if it is a position of the stream: an ``int`` in ``[0, 2**63)``."""
    check_int("position", value, minimum=0)
    if value > _permutation.MAX_POSITION:
        raise ValueError(f"'position' must be an int < 2**63 (got {value})")
    return int(value)


def _sizes(sources: Any) -> list[int]:
    """Return the number of samples of each source (a ``ConcatDataset`` or a sequence)."""
    if isinstance(sources, ConcatDataset):
        sources = sources.datasets
    if isinstance(sources, (str, bytes)) or not isinstance(sources, Sequence) or not sources:
        raise TypeError(
            "'sources' must be a ConcatDataset or a non-empty sequence of sized datasets or "
            f"int sizes (got {describe(sources)})"
        )
    out = []
    for k, source in enumerate(sources):
        if isinstance(source, int) and not isinstance(source, bool):
            size = check_int(f"sources[{k}]", source, minimum=0)
        elif isinstance(source, Sized) and not isinstance(source, (str, bytes)):
            size = len(source)
        else:
            raise TypeError(
                f"'sources'[{k}] must be a sized dataset or an int number of samples "
                f"(got {describe(source)})"
            )
        if size > _MAX_SIZE:
            raise ValueError(f"'sources'[{k}] must hold at most 2**62 samples (got {size})")
        out.append(size)
    if sum(out) > _permutation.MAX_POSITION:
        raise ValueError(
            f"'sources' must hold fewer than 2**63 samples in all, so that every index of "
            f"their ConcatDataset fits in int64 (got {sum(out)})"
        )
    return out


def source_seed(seed: int, source: int) -> int:
    """Return the seed of source ``source``'s own order in a mixture seeded ``seed``.

    >>> source_seed(0, 0) != source_seed(0, 1) != source_seed(1, 0)
    True
    """
    return _permutation.splitmix64(_permutation.splitmix64(seed) ^ source)


class _Stream:
    """One iteration of a ``MixtureSampler``: chunks of indices, and how far it got."""

    def __init__(self, sampler: MixtureSampler, start: int) -> None:
        # Copies, not the sampler (see sampler._Stream).
        self._locate = sampler._chunk
        self._rank, self._world_size = sampler.rank, sampler.world_size
        self.start = start
        self._done = 0
        self._chunk: Iterator[int] = iter(())
        self._chunk_size = 0

    def chunks(self) -> Iterator[Iterator[int]]:
        first = self.start + self._rank
        size = _FIRST_CHUNK
        while True:
            values = self._locate(
                first + self._world_size * (self._done + self._chunk_size), self._world_size, size
            )
            self._done += self._chunk_size
            self._chunk = iter(values)
            self._chunk_size = size
            yield self._chunk
            size = min(32 * size if size <= _SCALAR_CHUNK else 2 * size, _MAX_CHUNK)

    def position(self) -> int:
        """Return the global position of the next row of indices this iteration yields."""
        left = operator.length_hint(self._chunk)
        return self.start + self._world_size * (self._done + self._chunk_size - left)


class MixtureSampler(Sampler[int]):
    """An endless stream over weighted sources, in exact proportions, resumable in O(1).

    Global position ``g`` goes to source ``k`` by a pure low-discrepancy rule: in every prefix
    of the stream (and so in every window) each source holds its weight's share within
    ``bound`` samples (``ceil(log2(K)) / 2`` for ``K`` sources: 1 for three; as much again
    for each phase change), whatever the length. Each source walks its own endless
    ``InfiniteSampler`` order (a new permutation of that source every pass, seed
    ``source_seed(seed, k)``), whatever the others do. The indices
    are those of ``ConcatDataset(sources)``: source ``k``'s index ``i`` is
    ``sum(sizes[:k]) + i``.

    ``phases`` change the weights at named global positions (an annealing stage at the end of
    pre-training); across a change each source goes on where it stood. Rank ``r`` of ``W``
    yields positions ``start + r``, ``start + r + W``, ...: the global order does not depend on
    ``W``, so a checkpoint taken on 8 ranks resumes on 3. Nothing reads or changes a global
    random state. It never ends and has no length: wrap the ``DataLoader`` in
    ``VirtualDataLoader``.

    Args:
        sources: a ``ConcatDataset`` of the sources, or a sequence of sized datasets or sizes.
            A source may be empty if its weight is 0 in every phase. Pass the very
            ``ConcatDataset`` that the ``DataLoader`` reads: the sampler cannot see the loader's
            dataset, and other sizes or another order of the parts would silently mislabel
            samples.
        weights: one non-negative finite number per source, not all zero (ratios: ``[7, 2, 1]``
            and ``[0.7, 0.2, 0.1]`` are the same mixture), in a sequence or a 1-D tensor or
            array. A weight 0 leaves its source out.
        phases: ``(start, weights)`` pairs: from global position ``start`` on, draw with these
            weights; starts increasing and above 0.
        seed: selects every source's permutations, ``0 <= seed < 2**64``; the same on every rank.
        rank: this process's rank; by default ``torch.distributed``'s when it is first needed,
            else 0.
        world_size: the number of ranks; by default ``torch.distributed``'s, else 1.
        start: the global position where iteration starts.

    >>> mix = MixtureSampler([4, 100], [3, 1], seed=0)
    >>> first = list(itertools.islice(mix, 8))
    >>> [mix.locate(g)[0] for g in range(8)]
    [0, 0, 1, 0, 0, 0, 1, 0]
    >>> sorted([i for i in first if i < 4][:4])  # source 0's first pass: a permutation of it
    [0, 1, 2, 3]
    >>> mix.counts(1000)
    [750, 250]
    """

    max_start = _permutation.MAX_START
    """The furthest position a stream may start at (``VirtualDataLoader`` checks it at load)."""

    def __init__(
        self,
        sources: ConcatDataset[Any] | Sequence[Sized | int],
        weights: Sequence[float],
        *,
        phases: Sequence[tuple[int, Sequence[float]]] = (),
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        start: int = 0,
    ) -> None:
        sizes = _sizes(sources)
        first = _phases.check_weights("weights", weights, sizes)
        later = _phases.check_phases(phases, sizes, _permutation.MAX_START)
        check_seed("seed", seed)
        check_rank_arguments(rank, world_size)
        self._rank_arg, self._world_size_arg = rank, world_size
        self._start = check_position("start", start, _permutation.MAX_START)
        self._sizes = sizes
        self._seed = seed
        self._schedule = _phases.Schedule(sizes, first, later, RULE)
        self._offsets = list(itertools.accumulate(sizes, initial=0))[:-1]
        self._seeds = [source_seed(seed, k) for k in range(len(sizes))]
        self._table = _permutation.sources(sizes, self._seeds)
        self._offsets_tensor = torch.tensor(self._offsets, dtype=torch.int64)
        self._bases = [torch.tensor(p.bases, dtype=torch.int64) for p in self._schedule.phases]
        self._live: _Stream | None = None

    @property
    def num_samples(self) -> int:
        """The number of samples of all sources together: the ``ConcatDataset``'s length."""
        return sum(self._sizes)

    @property
    def sizes(self) -> list[int]:
        """The number of samples of each source."""
        return list(self._sizes)

    @property
    def weights(self) -> list[list[int]]:
        """Every phase's weights, as the reduced ints that decide the order."""
        return self._schedule.weights()

    @property
    def phase_starts(self) -> list[int]:
        """The global position where each phase starts (the first at 0)."""
        return list(self._schedule.starts)

    @property
    def bound(self) -> list[float]:
        """Each source's proportion bound, valid for every prefix of the stream.

        In every prefix of ``L`` positions, source ``k``'s count differs from its target (the
        sum, over the phases the prefix meets, of ``weight_k / sum(weights)`` times the
        positions in that phase) by at most ``bound[k]``: ``depth_k / 2`` for each phase begun
        (``_mixture_rule``), so ``ceil(log2(K)) / 2`` with one phase. It does not grow with
        ``L``; in a window it is at most twice as large.

        >>> MixtureSampler([5, 5, 5], [1, 1, 1]).bound
        [1.0, 1.0, 0.5]
        >>> MixtureSampler([5, 5, 5], [1, 1, 1], phases=[(100, [1, 0, 1])]).bound
        [2.0, 2.0, 1.0]
        """
        trees = [phase.tree for phase in self._schedule.phases]
        return [sum(t.depth[k] for t in trees) / 2 for k in range(len(self._sizes))]

    @property
    def seed(self) -> int:
        """The seed that selects every source's permutations."""
        return self._seed

    @property
    def source_seeds(self) -> list[int]:
        """The seed of each source's own ``InfiniteSampler`` order."""
        return list(self._seeds)

    @property
    def rank(self) -> int:
        """This process's rank among ``world_size`` (resolved when read)."""
        return resolve_rank(self._rank_arg, self._world_size_arg, owner="MixtureSampler")[0]

    @property
    def world_size(self) -> int:
        """The number of ranks that share the global stream (resolved when read)."""
        return resolve_rank(self._rank_arg, self._world_size_arg, owner="MixtureSampler")[1]

    @property
    def start(self) -> int:
        """The global position at which the next ``iter()`` starts."""
        return self._start

    def seek(self, position: int) -> None:
        """Make the next ``iter()`` start at global ``position``. Iterators made are unaffected.

        >>> mix = MixtureSampler([3, 5], [1, 1])
        >>> whole = list(itertools.islice(mix, 10))
        >>> mix.seek(4)
        >>> list(itertools.islice(mix, 6)) == whole[4:]
        True
        """
        check_position("position", position, _permutation.MAX_START)
        self._start = position
        self._live = None

    def locate(self, position: int) -> tuple[int, int]:
        """Return ``(source, index within that source)`` at global ``position``.

        >>> MixtureSampler([3, 5], [1, 1], seed=4).locate(1)
        (1, 4)
        """
        _check_any_position(position)
        source, within = self._schedule.locate_int(position)
        n = self._sizes[source]
        return source, _permutation.index_at(within, n=n, seed=self._seeds[source], shuffle=True)

    def counts(self, position: int) -> list[int]:
        """Return how many of the global positions ``0 .. position - 1`` each source holds.

        Equivalently, where each source's own order stands at ``position``.

        >>> MixtureSampler([10, 10, 10], [0.5, 0.3, 0.2]).counts(10)
        [5, 3, 2]
        """
        _check_any_position(position)
        return self._schedule.counts(position)

    def fingerprint(self) -> dict[str, Any]:
        """Return the settings that decide the order, as fresh plain lists and ints.

        ``sizes``, ``weights`` (each phase's reduced ints), ``phase_starts``, ``seed`` and
        ``rule``.
        """
        return {
            SIZES: list(self._sizes),
            WEIGHTS: self._schedule.weights(),
            PHASE_STARTS: list(self._schedule.starts),
            SEED: self._seed,
            RULE_KEY: RULE,
        }

    def _chunk(self, first: int, stride: int, count: int) -> list[int]:
        """Return the indices at global positions ``first + stride * j``, ``j < count``."""
        if count <= _SCALAR_CHUNK:
            found = []
            for position in range(first, first + stride * count, stride):
                source, own = self._schedule.locate_int(position)
                n, seed = self._sizes[source], self._seeds[source]
                index = _permutation.index_at(own, n=n, seed=seed, shuffle=True)
                found.append(self._offsets[source] + index)
            return found
        positions = torch.arange(count, dtype=torch.int64).mul_(stride).add_(first)
        schedule = self._schedule
        last = first + stride * (count - 1)
        first_phase, last_phase = schedule.phase_at(first), schedule.phase_at(last)
        if first_phase == last_phase:  # the common case: no copies
            phase = schedule.phases[first_phase]
            sources, within = schedule.rule.locate(phase.tree, positions.sub_(phase.start))
            within.add_(self._bases[first_phase].index_select(0, sources))
        else:
            sources, within = self._across_phases(positions, first, stride, count)
        return self._indices(sources, within, count)

    def _across_phases(
        self, positions: torch.Tensor, first: int, stride: int, count: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(sources, positions within them)`` for a chunk that spans phase changes."""
        sources = torch.empty(count, dtype=torch.int64)
        within = torch.empty(count, dtype=torch.int64)
        schedule = self._schedule
        last = first + stride * (count - 1)
        for j in range(schedule.phase_at(first), schedule.phase_at(last) + 1):
            phase = schedule.phases[j]
            a = max(0, -(-(phase.start - first) // stride))
            b = count
            if j + 1 < len(schedule.phases):
                b = min(count, -(-(schedule.phases[j + 1].start - first) // stride))
            if a >= b:
                continue
            local = positions[a:b] - phase.start
            src, rank = schedule.rule.locate(phase.tree, local)
            sources[a:b] = src
            within[a:b] = rank.add_(self._bases[j].index_select(0, src))
        return sources, within

    def _indices(self, sources: torch.Tensor, within: torch.Tensor, count: int) -> list[int]:
        """Return the ``ConcatDataset`` indices of positions ``within`` their ``sources``."""
        hits = torch.bincount(sources, minlength=len(self._sizes)).tolist()
        present = [k for k, hit in enumerate(hits) if hit]
        if len(present) > _MASKED_SOURCES:
            # Many sources: one vectorised network for all of them.
            out = _permutation.indices_many(within, sources, self._table)
            return out.add_(self._offsets_tensor.index_select(0, sources)).tolist()
        # Few sources: each on its own, with the fast paths of a single source.
        out = torch.empty(count, dtype=torch.int64)
        for k in present:
            rows = torch.nonzero(sources == k).squeeze(1)
            values = _permutation.indices_of(
                within.index_select(0, rows), n=self._sizes[k], seed=self._seeds[k], shuffle=True
            )
            out.index_copy_(0, rows, values.add_(self._offsets[k]))
        return out.tolist()

    def __iter__(self) -> Iterator[int]:
        stream = _Stream(self, self._start)
        self._live = stream
        return itertools.chain.from_iterable(stream.chunks())

    def __len__(self) -> int:
        raise TypeError(
            "MixtureSampler is endless and has no length; wrap the DataLoader in "
            "VirtualDataLoader(loader, steps_per_epoch=...) for epochs of a fixed length"
        )

    def state_dict(self) -> dict[str, Any]:
        """Return where the latest iterator stands, as a fresh plain dict, in O(1) of position.

        ``start`` (the global position of the next index, as for ``InfiniteSampler``) and the
        fingerprint, flat: ``version``, ``start``, ``sizes``, ``weights``, ``phase_starts``,
        ``seed``, ``rule``. Safe for ``json`` and ``torch.load(..., weights_only=True)``.

        >>> mix = MixtureSampler([3, 5], [1, 1], world_size=2, rank=0)
        >>> it = iter(mix)
        >>> _ = [next(it) for _ in range(3)]
        >>> mix.state_dict()["start"]
        6
        """
        start = self._start if self._live is None else self._live.position()
        return _state.sampler_state(start, self.fingerprint())

    def check_checkpoint(self, fingerprint: Mapping[str, Any], position: int) -> None:
        """Check that a saved ``fingerprint`` resumes on this sampler at global ``position``.

        Everything must be equal, except the schedule from ``position`` on: phases that start
        at or after it may be added, moved, reweighted or removed (the phase in progress may
        end elsewhere). So a run can be extended by an annealing phase after a checkpoint.

        Raises:
            TypeError: a value of ``fingerprint`` has the wrong type.
            ValueError: a setting differs (the message names the key), or the schedule differs
                before ``position`` (the message names the phase).
        """
        mine = self.fingerprint()
        where = "MixtureSampler state"
        starts = _state.require(fingerprint, PHASE_STARTS, list, where)
        weights = _state.require(fingerprint, WEIGHTS, list, where)
        if len(starts) != len(weights) or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in starts
        ):
            raise ValueError(
                f"{where}['{PHASE_STARTS}'] must be a list of ints, one per entry of "
                f"'{WEIGHTS}' (got {describe(starts)}): the state is corrupt"
            )
        for j, ints in enumerate(weights):
            if not isinstance(ints, list) or not all(
                isinstance(w, int) and not isinstance(w, bool) for w in ints
            ):
                raise TypeError(
                    f"{where}['{WEIGHTS}'][{j}] must be a list of ints (got {describe(ints)})"
                )
        schedule = (PHASE_STARTS, WEIGHTS)
        _state.check_fingerprint(
            {key: value for key, value in mine.items() if key not in schedule},
            {key: value for key, value in fingerprint.items() if key not in schedule},
            where=where,
            owner="sampler",
        )
        _phases.check_past(self._schedule, starts, weights, position)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue from a ``state_dict()``: the next ``iter()`` starts where it stood.

        The state may come from any rank and world size, and from a sampler whose schedule
        differs only from the saved position on (see ``check_checkpoint``).

        Raises:
            ValueError: the state was saved with other settings, or is malformed.
            TypeError: a value has the wrong type.
        """
        fingerprint = self.fingerprint()
        if isinstance(state_dict, Mapping):
            # The saved schedule stands in for ours here; check_checkpoint compares the past.
            fingerprint.update(
                {key: state_dict[key] for key in (PHASE_STARTS, WEIGHTS) if key in state_dict}
            )
        start = _state.parse_sampler_state(
            state_dict,
            owner="MixtureSampler",
            fingerprint=fingerprint,
            max_start=_permutation.MAX_START,
        )
        self.check_checkpoint({key: state_dict[key] for key in fingerprint}, start)
        self.seek(start)
