"""The checkpoint formats of this package, and the one path that validates them.

A loader state is a small plain dict (ints, strings, bools and nested dicts of them), the same
on every rank, safe for ``json`` and for ``torch.load(..., weights_only=True)``::

    {
        "version": 2,               # VERSION: the format of this dict
        "steps_per_epoch": 100,     # the epoch length when saved (it may change on resume)
        "epoch": 3,                 # the virtual epoch in progress (or next to start)
        "batches_in_epoch": 17,     # batches of that epoch already handed out, < steps_per_epoch
        "steps": 317,               # batches handed out since the start of training
        "pass": 1,                  # pass of the wrapped loader in progress
        "batches_in_pass": 12,      # batches of that pass already handed out
        "resume": {                 # how the position inside the pass is restored
            "strategy": "seek",     # "seek", "skip", "delegate" or "replay"
            "fingerprint": {...},   # the settings that decide the order of samples
            "seek": {...},          # the strategy's own position, under its name
        },
    }

Each strategy documents its own keys (``_seek``, ``_skip``, ``_delegate``, ``_replay``) and owns
them as class constants; a part shared by strategies (``_pass_seeds``) nests under a key of its
own inside theirs. Version 1 (0.1.0) kept the strategy's keys flat in ``resume``: ``parse``
reads it too, by lifting it to version 2.

A sampler's state (``sampler_state``) has its own format version, ``SAMPLER_VERSION``.

Validation reads a whole state before anything is applied, and every error names the key, what
was expected and what was found.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch

from ._checks import as_power, describe

VERSION = 2
"""The format of a loader's state that ``VirtualDataLoader.state_dict()`` writes."""

READS = (1, 2)
"""The loader state formats ``parse`` reads."""

VERSION_KEY = "version"
STEPS_PER_EPOCH = "steps_per_epoch"
EPOCH = "epoch"
BATCHES_IN_EPOCH = "batches_in_epoch"
STEPS = "steps"
PASS = "pass"
BATCHES_IN_PASS = "batches_in_pass"
RESUME = "resume"
STRATEGY = "strategy"
FINGERPRINT = "fingerprint"

COUNTERS = (STEPS_PER_EPOCH, EPOCH, BATCHES_IN_EPOCH, STEPS, PASS, BATCHES_IN_PASS)

_ADDED_IN_2 = frozenset({"batches_per_pass"})
"""Fingerprint keys that version 1 did not write: not compared for a version-1 state."""

_V1_PASS_SEED = "seed"  # version 1 kept the adopted pass seed flat in "resume"
_V1_PASS_SEEDS = "pass_seeds"  # (version 2 nests it: PassSeeds.KEY)


def require(state: Mapping[str, Any], key: str, kind: type, where: str = "state") -> Any:
    """Return ``state[key]`` after checking that it exists and has type ``kind``.

    ``bool`` is not accepted where ``int`` is expected.

    Raises:
        ValueError: ``key`` is missing.
        TypeError: the value has another type.
    """
    if key not in state:
        raise ValueError(
            f"{where} has no key '{key}' (found keys {sorted(map(str, state))}); pass a dict "
            "returned by VirtualDataLoader.state_dict()"
        )
    value = state[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"{where}['{key}'] must be of type {kind.__name__} (got {describe(value)})")
    return value


def require_count(state: Mapping[str, Any], key: str, where: str = "state") -> int:
    """Return ``state[key]``, checked to be an ``int >= 0``."""
    value: int = require(state, key, int, where)
    if value < 0:
        raise ValueError(f"{where}['{key}'] must be an int >= 0 (got {value})")
    return value


def check_version(state: Any) -> int:
    """Check that ``state`` is a mapping of a format version this library reads; return it.

    Raises:
        TypeError: ``state`` is not a mapping.
        ValueError: the version is missing or unknown.
    """
    if not isinstance(state, Mapping):
        raise TypeError(
            f"'state_dict' must be a dict returned by VirtualDataLoader.state_dict() "
            f"(got {describe(state)})"
        )
    version: int = require(state, VERSION_KEY, int)
    if version not in READS:
        raise ValueError(
            f"state['{VERSION_KEY}'] is {version}, but this version of virtual_epochs reads "
            f"versions {', '.join(map(str, READS))} only; resume with the virtual_epochs release "
            "that wrote it"
        )
    return version


def check_fingerprint(
    expected: Mapping[str, Any],
    found: Any,
    where: str = f"state['{RESUME}']['{FINGERPRINT}']",
    owner: str = "loader",
    unchecked: frozenset[str] = frozenset(),
) -> None:
    """Check that a saved fingerprint equals this object's, naming the first difference.

    Args:
        expected: this object's fingerprint.
        found: the saved one.
        where: how messages name ``found``.
        owner: what this object is called in messages (``"loader"``, ``"sampler"``).
        unchecked: keys not compared (settings that an older format did not record).

    Raises:
        TypeError: ``found`` is not a mapping.
        ValueError: a setting differs, is missing or is unexpected.
    """
    if not isinstance(found, Mapping):
        raise TypeError(f"{where} must be a dict (got {describe(found)})")
    for key in found:
        if not isinstance(key, str):
            raise TypeError(f"{where} keys must be strings (got {describe(key)})")
    for key in sorted((set(expected) | set(found)) - unchecked):
        mine = expected.get(key, "<absent>")
        theirs = found.get(key, "<absent>")
        if mine != theirs or type(mine) is not type(theirs):
            raise ValueError(
                f"the checkpoint was saved with a different sample order: {where}['{key}'] is "
                f"{theirs!r} but this {owner} has {mine!r}; resume with the settings that wrote "
                "the checkpoint, or start a new run"
            )


SAMPLER_VERSION = 1
"""The format of a sampler's own state (``sampler_state``), versioned apart from ``VERSION``."""

START = "start"


def sampler_state(start: int, fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """Return a sampler's state: the format version, ``start`` and its fingerprint, flat.

    This is what a ``SeekableSampler`` of this package returns from ``state_dict()`` (torchdata's
    ``StatefulDataLoader`` saves and restores it by itself); ``parse_sampler_state`` reads it.

    >>> sampler_state(12, {"num_samples": 10, "seed": 0})
    {'version': 1, 'start': 12, 'num_samples': 10, 'seed': 0}
    """
    return {VERSION_KEY: SAMPLER_VERSION, START: start, **fingerprint}


def parse_sampler_state(
    state: Any, *, owner: str, fingerprint: Mapping[str, Any], max_start: int
) -> int:
    """Check a sampler's saved state against the sampler's ``fingerprint``; return its start.

    The one validation path for every sampler state this package reads: the keys must be
    exactly those of ``sampler_state``, each of the type of this sampler's own value, the
    version known, ``0 <= start <= max_start``, and the fingerprint equal.

    Args:
        state: what ``state_dict()`` returned, possibly from another rank or world size.
        owner: the sampler's class name, for messages (``"InfiniteSampler"``).
        fingerprint: the sampler's own fingerprint.
        max_start: the largest start position the sampler accepts.

    Raises:
        TypeError: ``state`` is not a dict, or a value has the wrong type.
        ValueError: a key is missing or unexpected, the version is unknown, ``start`` is out
            of range, or a setting differs (the message names the key).
    """
    if not isinstance(state, Mapping):
        raise TypeError(
            f"'state_dict' must be a dict returned by {owner}.state_dict() (got {describe(state)})"
        )
    where = f"{owner} state"
    kinds: dict[str, type] = {VERSION_KEY: int, START: int}
    kinds.update({key: type(value) for key, value in fingerprint.items()})
    found = sorted(map(str, state))
    hint = f"pass a dict returned by {owner}.state_dict()"
    for key in kinds:
        if key not in state:
            raise ValueError(f"{where} has no key '{key}' (found keys {found}); {hint}")
    for key in found:
        if key not in kinds:
            raise ValueError(
                f"{where} has an unexpected key '{key}' (expected keys {sorted(kinds)}); {hint}"
            )
    for key, kind in kinds.items():
        require(state, key, kind, where)
    if state[VERSION_KEY] != SAMPLER_VERSION:
        raise ValueError(
            f"{where}['{VERSION_KEY}'] is {state[VERSION_KEY]}, but this version of "
            f"virtual_epochs reads version {SAMPLER_VERSION} only; resume with the "
            "virtual_epochs release that wrote it"
        )
    start: int = state[START]
    if not 0 <= start <= max_start:
        raise ValueError(
            f"{where}['{START}'] must be an int in [0, {as_power(max_start)}] (got {start})"
        )
    check_fingerprint(
        fingerprint,
        {key: state[key] for key in fingerprint},
        where=where,
        owner="sampler",
    )
    return start


class Saved(NamedTuple):
    """A loader state, read and checked as far as it does not depend on the loader."""

    steps_per_epoch: int
    epoch: int
    batches_in_epoch: int
    steps: int
    pass_index: int
    batches_in_pass: int
    strategy: str
    fingerprint: Mapping[str, Any]
    own: Mapping[str, Any]
    """The strategy's own keys: ``state['resume'][strategy]``."""
    unchecked: frozenset[str] = frozenset()
    """Fingerprint keys the state's format did not record."""

    @property
    def where(self) -> str:
        """How messages name ``own``: ``state['resume']['seek']``."""
        return f"state['{RESUME}']['{self.strategy}']"


def parse(state: Any, strategy: str) -> Saved:
    """Check everything in ``state`` that does not depend on the loader, and return it.

    Args:
        state: what ``VirtualDataLoader.state_dict()`` returned (any format version read).
        strategy: the strategy of the loader that reads it, which the state must name.

    Raises:
        TypeError: ``state`` or a value in it has the wrong type.
        ValueError: a key is missing, the version is unknown, or counters contradict each other.
    """
    version = check_version(state)
    counts = {key: require_count(state, key) for key in COUNTERS}
    if counts[STEPS_PER_EPOCH] < 1:
        raise ValueError(
            f"state['{STEPS_PER_EPOCH}'] must be an int >= 1 (got {counts[STEPS_PER_EPOCH]})"
        )
    for part in (BATCHES_IN_EPOCH, BATCHES_IN_PASS):
        if counts[part] > counts[STEPS]:
            raise ValueError(
                f"state['{part}'] ({counts[part]}) cannot exceed state['{STEPS}'] "
                f"({counts[STEPS]}): the state is corrupt"
            )
    resume = require(state, RESUME, Mapping)
    where = f"state['{RESUME}']"
    saved_strategy = require(resume, STRATEGY, str, where)
    if saved_strategy != strategy:
        raise ValueError(
            f"{where}['{STRATEGY}'] is {saved_strategy!r}, but this loader resumes by "
            f"{strategy!r}: the checkpoint comes from a differently built loader; wrap the same "
            "kind of loader as the run that saved it"
        )
    fingerprint = require(resume, FINGERPRINT, Mapping, where)
    unchecked: frozenset[str] = frozenset()
    if version == 1:
        own: Mapping[str, Any] = _lift_v1(resume)
        unchecked = _ADDED_IN_2
    else:
        own = require(resume, strategy, Mapping, where)
        extra = sorted(set(map(str, resume)) - {STRATEGY, FINGERPRINT, strategy})
        if extra:
            raise ValueError(
                f"{where} has an unexpected key '{extra[0]}' (a '{strategy}' state holds "
                f"'{STRATEGY}', '{FINGERPRINT}' and '{strategy}'): the state is corrupt"
            )
    return Saved(
        counts[STEPS_PER_EPOCH],
        counts[EPOCH],
        counts[BATCHES_IN_EPOCH],
        counts[STEPS],
        counts[PASS],
        counts[BATCHES_IN_PASS],
        strategy,
        fingerprint,
        own,
        unchecked,
    )


def _lift_v1(resume: Mapping[str, Any]) -> dict[str, Any]:
    """Return a version-1 ``resume``'s flat strategy keys as version 2 nests them."""
    own = {key: value for key, value in resume.items() if key not in (STRATEGY, FINGERPRINT)}
    if _V1_PASS_SEED in own:
        own[_V1_PASS_SEEDS] = {_V1_PASS_SEED: own.pop(_V1_PASS_SEED)}
    return own


def copy_plain(value: Any) -> Any:
    """Return a copy of a plain state value: its dicts and lists new, the rest shared.

    Cheaper than ``copy.deepcopy`` on the small states ``state_dict()`` returns every step.
    """
    if isinstance(value, Mapping):
        return {key: copy_plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_plain(item) for item in value]
    return value


_TENSOR = "__tensor__"
_TUPLE = "__tuple__"
_ITEMS = "__items__"


def encode(value: Any) -> Any:
    """Return ``value`` (a wrapped loader's state) as plain JSON-safe values.

    Tensors (torchdata saves its generator state as one) become base64 text of their
    ``torch.save`` bytes, tuples and dicts with keys other than strings become tagged dicts;
    ``decode`` reverses it exactly.

    >>> import json
    >>> state = {"yielded": 3, "pair": (1, 2), 7: [None, 1.5], "t": torch.tensor([1, 2])}
    >>> back = decode(json.loads(json.dumps(encode(state))))
    >>> back["pair"], back[7], back["t"].tolist()
    ((1, 2), [None, 1.5], [1, 2])
    """
    if isinstance(value, torch.Tensor):
        buffer = io.BytesIO()
        torch.save(value.detach().cpu(), buffer)
        return {_TENSOR: base64.b64encode(buffer.getvalue()).decode("ascii")}
    if isinstance(value, tuple):
        return {_TUPLE: [encode(item) for item in value]}
    if isinstance(value, list):
        return [encode(item) for item in value]
    if isinstance(value, Mapping):
        if all(isinstance(key, str) for key in value):
            return {key: encode(item) for key, item in value.items()}
        return {_ITEMS: [[encode(key), encode(item)] for key, item in value.items()]}
    return value


def decode(value: Any) -> Any:
    """Reverse ``encode``."""
    if isinstance(value, list):
        return [decode(item) for item in value]
    if isinstance(value, Mapping):
        if len(value) == 1 and _TENSOR in value:
            data = base64.b64decode(value[_TENSOR])
            return torch.load(io.BytesIO(data), weights_only=True)
        if len(value) == 1 and _TUPLE in value:
            return tuple(decode(item) for item in value[_TUPLE])
        if len(value) == 1 and _ITEMS in value:
            return {_hashable(decode(key)): decode(item) for key, item in value[_ITEMS]}
        return {key: decode(item) for key, item in value.items()}
    return value


def _hashable(key: Any) -> Any:
    """A decoded dict key: lists (from JSON) become tuples again."""
    return tuple(_hashable(item) for item in key) if isinstance(key, list) else key
