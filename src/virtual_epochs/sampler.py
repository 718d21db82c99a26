"""``InfiniteSampler``: an endless, sharded, checkpointable stream of dataset indices.

The order is a pure function of ``(n, seed, shuffle)`` and the global sample position (see
``_permutation``); the sampler itself holds only where the next iteration starts. Because the
``DataLoader`` over it never ends, its worker pipeline never drains at a pass boundary, and
resuming is arithmetic.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterator, Sized
from typing import Any

from torch.utils.data import BatchSampler, DataLoader, Sampler

from . import _feistel, _permutation, _state
from ._checks import check_bool, check_int, check_position, check_seed, describe
from ._distributed import check_rank_arguments, resolve_rank

ORDER = "shuffle_order"
SMALL_ORDER = 2
"""The order of small shuffled datasets since 0.2.0 (see ``InfiniteSampler.fingerprint``)."""

_FIRST_CHUNK = 1024  # small, so that the first index comes in well under a millisecond
_MAX_CHUNK = 32768  # big enough to amortise tensor calls, small enough to stay in cache


class _Stream:
    """One iteration of an ``InfiniteSampler``: chunks of indices, and how far it got."""

    def __init__(self, sampler: InfiniteSampler, start: int) -> None:
        # Copies, not the sampler: the sampler refers to its latest stream, and a reference
        # back would keep both (and a chunk of indices) alive until the garbage collector runs.
        self._n, self._seed, self._shuffle = sampler.num_samples, sampler.seed, sampler.shuffle
        self._rank, self._world_size = sampler._ranks()  # one look-up for the whole iteration
        self.start = start
        self._done = 0  # indices in the chunks before the current one
        self._chunk: Iterator[int] = iter(())
        self._chunk_size = 0

    def chunks(self) -> Iterator[Iterator[int]]:
        first = self.start + self._rank
        size = _FIRST_CHUNK
        while True:
            values = _permutation.indices(
                first + self._world_size * (self._done + self._chunk_size),
                self._world_size,
                size,
                n=self._n,
                seed=self._seed,
                shuffle=self._shuffle,
            ).tolist()
            self._done += self._chunk_size
            self._chunk = iter(values)
            self._chunk_size = size
            yield self._chunk
            size = min(2 * size, _MAX_CHUNK)

    def position(self) -> int:
        """Return the global position of the next row of indices this iteration yields."""
        left = operator.length_hint(self._chunk)
        return self.start + self._world_size * (self._done + self._chunk_size - left)


class InfiniteSampler(Sampler[int]):
    """An endless stream of dataset indices, sharded across ranks, resumable in O(1).

    Global sample position ``g`` holds index ``perm(seed, g // n)[g % n]``: every pass over the
    dataset is a new pseudo-random permutation (``g % n`` without shuffle), computed in chunks
    without materialising it, whatever ``n``. Rank ``r`` of ``W`` yields positions
    ``start + r``, ``start + r + W``, ...: together the ranks cover each window of ``W``
    consecutive positions exactly once, and the global order does not depend on ``W``, so a
    checkpoint taken on 8 ranks resumes on 3.

    It never ends and has no length: wrap the ``DataLoader`` that uses it in
    ``VirtualDataLoader`` to cut the stream into epochs. It never reads or changes a global
    random state.

    Args:
        data_source: a sized dataset, or the number of samples ``n``.
        shuffle: a new permutation every pass (``True``) or ``0, 1, ..., n - 1`` repeated.
        seed: selects the permutations, ``0 <= seed < 2**64``; the same on every rank.
        rank: this process's rank; by default ``torch.distributed``'s when initialised, else 0.
        world_size: the number of ranks; by default ``torch.distributed``'s, else 1.
        start: the global sample position where iteration starts.

    >>> sampler = InfiniteSampler(4, shuffle=False, start=2)
    >>> list(itertools.islice(sampler, 6))
    [2, 3, 0, 1, 2, 3]
    >>> ranks = [InfiniteSampler(10, seed=1, rank=r, world_size=2) for r in range(2)]
    >>> first_pass = [i for row in itertools.islice(zip(*ranks), 5) for i in row]
    >>> sorted(first_pass)
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    """

    def __init__(
        self,
        data_source: Sized | int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        start: int = 0,
    ) -> None:
        if isinstance(data_source, (DataLoader, BatchSampler, Sampler)) or hasattr(
            data_source, "batch_sampler"
        ):
            # Their length counts batches or a sampler's indices, not the dataset's samples.
            raise TypeError(
                f"'data_source' must be the dataset (or its number of samples), not a "
                f"{type(data_source).__name__}, whose length is not the number of samples "
                f"(got {describe(data_source)}); pass the dataset: "
                "DataLoader(dataset, sampler=InfiniteSampler(dataset), batch_size=...)"
            )
        if isinstance(data_source, int) and not isinstance(data_source, bool):
            n = check_int("data_source", data_source, minimum=1)
        elif isinstance(data_source, Sized) and not isinstance(data_source, (str, bytes)):
            n = len(data_source)
            if n < 1:
                kind = type(data_source).__name__
                raise ValueError(
                    f"'data_source' must hold at least one sample (got a {kind} of length 0)"
                )
        else:
            raise TypeError(
                f"'data_source' must be a sized dataset or an int number of samples "
                f"(got {describe(data_source)})"
            )
        if n > _permutation.MAX_POSITION:
            raise ValueError(f"'data_source' must hold fewer than 2**63 samples (got {n})")
        check_bool("shuffle", shuffle)
        check_seed("seed", seed)
        check_position("start", start, _permutation.MAX_START)
        check_rank_arguments(rank, world_size)
        self._rank_argument, self._world_size_argument = rank, world_size
        self._n = n
        self._shuffle = shuffle
        self._seed = seed
        self._start = start
        self._live: _Stream | None = None

    max_start = _permutation.MAX_START
    """The largest position ``seek`` and ``start`` accept, ``2**62``: the stream needs room
    before its positions pass ``2**63``. ``VirtualDataLoader`` checks saved positions against it.
    """

    @property
    def num_samples(self) -> int:
        """The number of samples ``n`` in one pass."""
        return self._n

    @property
    def shuffle(self) -> bool:
        """Whether every pass is a new permutation."""
        return self._shuffle

    @property
    def seed(self) -> int:
        """The seed that selects the permutations."""
        return self._seed

    @property
    def rank(self) -> int:
        """This process's rank among ``world_size``: the argument, else ``torch.distributed``'s.

        A default is read when asked (each ``iter()`` asks), so a sampler built before
        ``init_process_group`` shards once the group exists.

        Raises:
            RuntimeError: no process group is initialised yet, but the environment says this
                process is one of several ranks (torchrun's ``WORLD_SIZE``).
        """
        return self._ranks()[0]

    @property
    def world_size(self) -> int:
        """The number of ranks that share the global sample stream (read like ``rank``)."""
        return self._ranks()[1]

    def _ranks(self) -> tuple[int, int]:
        return resolve_rank(self._rank_argument, self._world_size_argument, owner="InfiniteSampler")

    @property
    def start(self) -> int:
        """The global sample position at which the next ``iter()`` starts."""
        return self._start

    def seek(self, position: int) -> None:
        """Make the next ``iter()`` start at global sample ``position``.

        Iterators already made are not affected.

        >>> sampler = InfiniteSampler(3, shuffle=False)
        >>> sampler.seek(4)
        >>> next(iter(sampler))
        1
        """
        check_position("position", position, _permutation.MAX_START)
        self._start = position
        self._live = None

    def fingerprint(self) -> dict[str, Any]:
        """Return the settings that decide the order: ``num_samples``, ``seed``, ``shuffle``.

        A shuffled dataset of at most ``_feistel.SMALL`` samples adds ``"shuffle_order": 2``: its
        order changed after virtual_epochs 0.1.0 (a swap-or-not network replaced a sort of the
        whole pass), so a checkpoint of such a run from 0.1.0 is refused by the fingerprint
        instead of resuming onto another order. Larger datasets kept their order.
        """
        out: dict[str, Any] = {"num_samples": self._n, "seed": self._seed, "shuffle": self._shuffle}
        if self._shuffle and 1 < self._n <= _feistel.SMALL:
            out[ORDER] = SMALL_ORDER
        return out

    def __iter__(self) -> Iterator[int]:
        stream = _Stream(self, self._start)
        self._live = stream
        return itertools.chain.from_iterable(stream.chunks())

    def __len__(self) -> int:
        raise TypeError(
            "InfiniteSampler is endless and has no length; wrap the DataLoader in "
            "VirtualDataLoader(loader, steps_per_epoch=...) for epochs of a fixed length"
        )

    def state_dict(self) -> dict[str, Any]:
        """Return where the latest iterator stands, as a fresh plain dict, in O(1).

        ``start`` is the global position of the next index that the latest ``iter()`` would
        yield (counted in rows of ``world_size`` positions, so it is the same on every rank that
        yielded as many indices), or ``start`` if none was made since the last ``seek``. This is
        what torchdata's ``StatefulDataLoader`` saves and restores by itself.

        >>> sampler = InfiniteSampler(10, world_size=2, rank=1)
        >>> it = iter(sampler)
        >>> _ = [next(it) for _ in range(3)]
        >>> sampler.state_dict()["start"]
        6
        """
        start = self._start if self._live is None else self._live.position()
        return _state.sampler_state(start, self.fingerprint())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue from a ``state_dict()``: the next ``iter()`` starts where it stood.

        The state may come from any rank and any world size: ``start`` is a global position.

        Raises:
            ValueError: the state was saved with other settings, or is malformed.
            TypeError: a value has the wrong type.
        """
        start = _state.parse_sampler_state(
            state_dict,
            owner="InfiniteSampler",
            fingerprint=self.fingerprint(),
            max_start=_permutation.MAX_START,
        )
        self.seek(start)
