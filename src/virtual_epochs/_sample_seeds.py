"""Seeds for one sample's randomness, as a pure function of ``(seed, global sample position)``.

Each consumer of randomness gets its own stream, derived from the seed by a salt, so that the
global generators and the explicit per-sample generators never share draws:

- torch's default CPU generator and a per-sample ``torch.Generator``: ``manual_seed`` keeps only
  the low 32 bits of a seed (mt19937), so their seeds are 32-bit, ``hash32(base + position)``:
  a bijection of the position, so ``2**32`` consecutive positions all get different streams;
- numpy's legacy global ``RandomState`` (also mt19937, 32-bit seeds): the same construction;
- Python's ``random``, which takes any int: a 64-bit SplitMix64 of ``base + position``;
- a per-sample ``numpy.random.Generator``: Philox, a counter-based generator, keyed by the pair
  (seed-derived word, position) itself: distinct for every position, no hashing needed.

Seeding goes through ``torch.default_generator.manual_seed`` (about 1 us), not
``torch.manual_seed`` (about 100 us: it visits every device backend); only the CPU generator
is seeded. ``GlobalStates`` saves and restores the three global generators around the samples
loaded in the main process, where the model's own randomness (dropout) lives.
"""

from __future__ import annotations

import random
from _random import Random as _CRandom
from functools import lru_cache
from typing import Any, NamedTuple

import torch

from ._bits import M32 as _M32
from ._bits import M64 as _M64
from ._permutation import hash32, splitmix64

try:  # numpy is optional: torch runs without it, and then nobody can draw from numpy.random
    import numpy as np
except ImportError:  # pragma: no cover  # numpy is installed wherever the tests run
    np = None  # type: ignore[assignment]  # the module or nothing

# The hidden instance behind the module-level functions of ``random`` (``random.random`` is its
# bound method). Seeding it through the C base class skips the Python wrapper of ``seed``
# (about 1 us of the 6 it costs); the wrapper adds only the reset of ``gauss_next``, done here.
_PY_RANDOM: random.Random = random.seed.__self__  # type: ignore[attr-defined]  # bound method
_c_seed = _CRandom.seed


# One salt per stream: any distinct constants will do (the digits of pi, 64 bits at a time).
_TORCH, _PYTHON, _NUMPY, _TORCH_GENERATOR, _NUMPY_GENERATOR = (
    0x243F6A8885A308D3,
    0x13198A2E03707344,
    0xA4093822299F31D0,
    0x082EFA98EC4E6C89,
    0x452821E638D01377,
)


@lru_cache(maxsize=64)
def _bases(seed: int) -> tuple[int, int, int, int, int]:
    """Return the per-stream bases of ``seed``: torch, Python, numpy, torch's and numpy's own."""
    return (
        splitmix64(seed ^ _TORCH) & _M32,
        splitmix64(seed ^ _PYTHON),
        splitmix64(seed ^ _NUMPY) & _M32,
        splitmix64(seed ^ _TORCH_GENERATOR) & _M32,
        splitmix64(seed ^ _NUMPY_GENERATOR),
    )


def torch_seed(seed: int, position: int) -> int:
    """The seed of torch's global generator for the sample at ``position``.

    >>> len({torch_seed(0, p) for p in range(100_000)})
    100000
    """
    return hash32((_bases(seed)[0] + position) & _M32)


def python_seed(seed: int, position: int) -> int:
    """The seed of Python's ``random`` for the sample at ``position`` (64 bits)."""
    return splitmix64((_bases(seed)[1] + position) & _M64)


def numpy_seed(seed: int, position: int) -> int:
    """The seed of numpy's legacy global generator for the sample at ``position``."""
    return hash32((_bases(seed)[2] + position) & _M32)


def torch_generator(seed: int, position: int) -> torch.Generator:
    """A new CPU ``torch.Generator`` for the sample at ``position``."""
    return torch.Generator().manual_seed(hash32((_bases(seed)[3] + position) & _M32))


def numpy_generator(seed: int, position: int) -> Any:
    """A new ``numpy.random.Generator`` (Philox) for the sample at ``position``.

    Raises:
        ModuleNotFoundError: numpy is not installed.
    """
    if np is None:  # pragma: no cover  # numpy is installed wherever the tests run
        raise ModuleNotFoundError("numpy_generator() needs numpy; pip install numpy")
    key = (_bases(seed)[4] << 64) | position  # Philox's 128-bit key: unique per position
    return np.random.Generator(np.random.Philox(key=key))


GENERATORS = ("torch", "random", "numpy")
"""The global generators that can be keyed, by the names ``KeyedDataset`` takes."""


class Which(NamedTuple):
    """Which global generators to seed (and, in the main process, to save and restore)."""

    torch: bool = True
    random: bool = True
    numpy: bool = True


ALL = Which()


def seed_globals(seed: int, position: int, which: Which = ALL) -> None:
    """Seed torch's CPU generator, ``random`` and ``numpy.random`` for the sample at ``position``.

    Only the CPU generator: ``torch.manual_seed`` would also seed every device, 100 times slower.
    """
    bases = _bases(seed)
    if which.torch:
        torch.default_generator.manual_seed(hash32((bases[0] + position) & _M32))
    if which.random:  # as random.seed(int) does, 1 us faster
        _c_seed(_PY_RANDOM, splitmix64((bases[1] + position) & _M64))
        _PY_RANDOM.gauss_next = None  # type: ignore[attr-defined]  # set by Random.__init__
    if which.numpy and np is not None:
        np.random.seed(hash32((bases[2] + position) & _M32))


class GlobalStates:
    """The states of the global generators, taken when built; ``restore()`` puts them back.

    The costs differ a lot (numpy's ``get_state``/``set_state`` pair is some 100 times torch's),
    which is why ``which`` can leave out the generators a pipeline does not use.

    >>> saved = GlobalStates()
    >>> before = torch.rand(1)
    >>> saved.restore()
    >>> torch.equal(torch.rand(1), before)
    True
    """

    __slots__ = ("_numpy", "_python", "_torch")

    def __init__(self, which: Which = ALL) -> None:
        self._torch = torch.default_generator.get_state() if which.torch else None
        self._python = random.getstate() if which.random else None
        self._numpy = np.random.get_state() if which.numpy and np is not None else None

    def restore(self) -> None:
        """Put the saved states back."""
        if self._torch is not None:
            torch.default_generator.set_state(self._torch)
        if self._python is not None:
            random.setstate(self._python)
        if self._numpy is not None:
            np.random.set_state(self._numpy)
