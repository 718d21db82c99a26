"""Fuzzing ``load_state_dict``: whatever it is given, it loads a usable state or says why not.

Random dicts, and random mutations of real states of every strategy, must either load, after
which the loader iterates without an error, or raise ``ValueError``/``TypeError`` with a message
that names the state, and leave the loader exactly as it was: the same ``state_dict()``, the
same batches after. Never another exception type, never half a load.

The holes these fuzzers found are pinned below, each by its own test: those since closed by a
pinned message, those still open by a strict xfail. ``known_hole`` recognises the open ones, so
that the fuzzers keep hunting for new ones meanwhile.
"""

from __future__ import annotations

import copy
import json
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from _helpers import CountingStream, FailOnce, plain, round_trip
from virtual_epochs import InfiniteSampler, VirtualDataLoader

pytestmark = [  # the replay cost warnings: of the replay strategy, and after an error
    pytest.mark.filterwarnings("ignore:VirtualDataLoader is resuming"),
    pytest.mark.filterwarnings("ignore:VirtualDataLoader is reopening"),
]

STEPS_PER_EPOCH = 4


class Pairs:
    """A custom batch sampler (resumed at the batch level): ``[0, 1], [2, 3], ...``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Iterator[list[int]]:
        return iter([[i, i + 1] for i in range(0, self.n - 1, 2)])

    def __len__(self) -> int:
        return self.n // 2


class Batches:
    """A user's re-iterable of batches, without a length (resumed by replay)."""

    def __iter__(self) -> Iterator[list[int]]:
        return iter([[0, 1], [2, 3], [4]])


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


LOADERS: dict[str, Callable[[], Any]] = {
    "seek": lambda: DataLoader(range(10), batch_size=3, sampler=InfiniteSampler(10, seed=1)),
    "skip-shuffle": lambda: DataLoader(range(10), batch_size=3, shuffle=True, generator=_seeded(5)),
    "skip-adopted-seed": lambda: DataLoader(range(10), batch_size=3, shuffle=True),
    "skip-batch-sampler": lambda: DataLoader(range(10), batch_sampler=Pairs(10)),
    "replay-list": lambda: [[0, 1], [2, 3], [4]],
    "replay-iterable": Batches,
    "delegate-stateful-dataloader": lambda: StatefulDataLoader(
        range(10), batch_size=3, shuffle=True, generator=_seeded(5)
    ),
    "delegate-dataset": lambda: DataLoader(CountingStream(7), batch_size=2),
}
KINDS = sorted(LOADERS)


def make(kind: str) -> VirtualDataLoader[Any]:
    return VirtualDataLoader(LOADERS[kind](), STEPS_PER_EPOCH)


def advance(vl: VirtualDataLoader[Any], steps: int) -> VirtualDataLoader[Any]:
    """Hand out ``steps`` batches, as a training loop would (epochs complete when full)."""
    while vl.steps < steps:
        for _ in zip(range(steps - vl.steps), vl, strict=False):
            pass
    return vl


def _after_error(checkpoint_at: int | None) -> dict[str, Any]:
    """A real delegate state taken right after a batch failed at step 3 (with a replay count)."""
    kind = "delegate-stateful-dataloader"
    bad = plain(list(make(kind))[3])[0]  # a sample of batch 3, first loaded there
    with tempfile.TemporaryDirectory() as scratch:
        dataset = FailOnce(10, bad, RuntimeError("a corrupt sample"), Path(scratch) / "failed")
        loader = StatefulDataLoader(dataset, batch_size=3, shuffle=True, generator=_seeded(5))
        vl = VirtualDataLoader(loader, STEPS_PER_EPOCH)
        with pytest.raises(RuntimeError, match="a corrupt sample"):  # noqa: PT012
            for _ in vl:
                if vl.steps == checkpoint_at:
                    vl.state_dict()
    state = round_trip(vl.state_dict())
    assert (state["steps"], state["resume"]["delegate"]["replay"]) == (3, 3 - (checkpoint_at or 0))
    return state


def _valid_states() -> dict[str, list[dict[str, Any]]]:
    """Real states of every kind: at the start, mid-epoch, at pass ends, several passes in; for
    "delegate-stateful-dataloader" also after a failed batch (its last two)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        torch.manual_seed(0)  # the adopted seed of "skip-adopted-seed"
        out[kind] = [round_trip(advance(make(kind), steps).state_dict()) for steps in (0, 3, 4, 9)]
    out["delegate-stateful-dataloader"] += [_after_error(None), _after_error(2)]
    return out


VALID = _valid_states()

# ---------------------------------------------------------------------------- the checks

CLEAR_MESSAGE = re.compile(r"\bstate\b|'state_dict'")  # it names the state, or the key in it


OUTCOMES: Counter[str] = Counter()  # what the fuzzers saw, for the curious (-s)


def continuation(vl: VirtualDataLoader[Any], epochs: int = 2) -> list[Any]:
    """The next ``epochs`` epochs of ``vl``, as plain values, with the counters after each."""
    out: list[Any] = []
    for _ in range(epochs):
        out.append([plain(batch) for batch in vl])
        out.append((vl.epoch, vl.steps))
    return out


def as_json(value: Any) -> str:
    """``value`` as canonical JSON text (so that NaN equals NaN, and 3 equals "3" as a key)."""
    return json.dumps(round_trip(value), sort_keys=True)


def check_load(kind: str, state: Any, *, at: int = 5) -> str:
    """Load ``state`` into a loader of ``kind`` that stands at step ``at``; check the contract.

    Returns ``"refused"``, ``"loaded"`` or the name of the known hole it fell into; fails the
    test on anything else.
    """
    torch.manual_seed(0)  # the adopted seed of "skip-adopted-seed"
    vl = advance(make(kind), at)
    before = vl.state_dict()
    given_state = copy.deepcopy(state)
    refusal: TypeError | ValueError | None = None
    try:
        vl.load_state_dict(state)
    except (TypeError, ValueError) as error:
        refusal = error
    if refusal is None:
        outcome = check_loaded(kind, vl, state)
    else:
        outcome = "refused"
        if not CLEAR_MESSAGE.search(str(refusal)):
            outcome = known_hole(kind, state, refusal, loading=True) or "unclear"
            assert outcome != "unclear", f"unclear message: {refusal!r}"
        assert vl.state_dict() == before, "a refused state changed the loader"
        torch.manual_seed(0)
        twin = advance(make(kind), at)
        assert continuation(vl) == continuation(twin), "a refused state changed the batches"
    assert state == given_state, "load_state_dict changed the dict it was given"
    OUTCOMES[outcome] += 1
    return outcome


def check_loaded(kind: str, vl: VirtualDataLoader[Any], state: Any) -> str:
    """An accepted state: counters as saved, iteration works, its own state round-trips."""
    assert (vl.steps, len(vl)) == (state["steps"], STEPS_PER_EPOCH)
    saved = vl.state_dict()
    again = make(kind)
    again.load_state_dict(round_trip(saved))  # what it accepted, a fresh loader accepts
    assert as_json(again.state_dict()) == as_json(saved)
    try:
        batches = continuation(vl)
    except Exception as error:
        hole = known_hole(kind, state, error)
        if hole is None:
            raise
        return hole
    assert vl.steps == state["steps"] + len(batches[0]) + len(batches[2])
    assert batches[0], "an accepted state gave an empty epoch"
    return "loaded"


# ---------------------------------------------------------------- the known holes (bugs)


def _inner(state: Any) -> Any:
    """The delegate's nested inner state in ``state``, or None where the path is broken."""
    try:
        return state["resume"]["delegate"].get("inner")
    except (AttributeError, KeyError, TypeError):
        return None


def _valid_inner(kind: str) -> list[Any]:
    return [_inner(valid) for valid in VALID[kind]]


def known_hole(
    kind: str, state: dict[str, Any], error: BaseException, *, loading: bool = False
) -> str | None:
    """Name the known gap that ``state`` ran into with ``error``, if it is one.

    Each has a test below (a strict xfail while it is a bug); when one is closed, remove its
    line here too.
    """
    if loading:  # refused, with an unclear message: no known case left
        return None
    # loaded, then failed to iterate
    if kind == "replay-iterable" and "cannot resume: pass" in str(error):
        return "replay-beyond-pass"  # test_replay_beyond_the_pass_of_an_iterable_without_length
    if kind.startswith("delegate") and _inner(state) not in _valid_inner(kind):
        return "delegate-inner"  # test_delegate_inner_state_is_checked_at_load
    return None


# ------------------------------------------------------------------------ the generators

KEYS = [
    "version",
    "steps_per_epoch",
    "epoch",
    "batches_in_epoch",
    "steps",
    "pass",
    "batches_in_pass",
    "resume",
    "strategy",
    "fingerprint",
    "seek",
    "skip",
    "delegate",
    "replay",
    "position",
    "samples_in_pass",
    "pass_seeds",
    "seed",
    "inner",
    "digest",
]
EDGE_INTS = [-1, 0, 1, 2**31, 2**63 - 1, 2**63, 2**64, 2**70, -(2**63)]

ints = st.integers(-3, 40) | st.sampled_from(EDGE_INTS)
scalars = (
    st.none()
    | st.booleans()
    | ints
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
    | st.sampled_from(["seek", "skip", "replay", "delegate", "1"])
)
keys = st.sampled_from(KEYS) | st.text(max_size=4) | st.integers(0, 3)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=3),
    max_leaves=8,
)
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure here is never a fluke
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _paths(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside nested dicts and lists."""
    out: list[tuple[Any, ...]] = []
    if isinstance(tree, (dict, list)):
        for key, value in tree.items() if isinstance(tree, dict) else enumerate(tree):
            out.append((*prefix, key))
            out.extend(_paths(value, (*prefix, key)))
    return out


@st.composite
def mutated_states(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A kind of loader, and a real state of it (or of another kind) with 1-3 mutations."""
    kind = draw(st.sampled_from(KINDS))
    source = draw(st.sampled_from(KINDS)) if draw(st.integers(0, 9)) == 0 else kind
    state = copy.deepcopy(draw(st.sampled_from(VALID[source])))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(state)))
        parent = state
        for key in path[:-1]:
            parent = parent[key]
        old = parent[path[-1]]
        operation = draw(st.sampled_from(["replace", "delete", "add", "nudge", "nudge"]))
        if operation == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif operation == "add" and isinstance(parent, dict):
            parent[draw(keys)] = draw(values)
        elif operation == "nudge" and isinstance(old, int) and not isinstance(old, bool):
            parent[path[-1]] = old + draw(st.sampled_from([-2, -1, 1, 2, 7, 2**63]))
        else:
            parent[path[-1]] = draw(values)
    return kind, state


@st.composite
def random_states(draw: st.DrawFn) -> tuple[str, Any]:
    """A kind, and a dict shaped like a state: random counters, each part maybe gone or junk."""
    kind = draw(st.sampled_from(KINDS))
    real = VALID[kind][0]

    def fill(template: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for key, value in template.items():
            fate = draw(st.integers(0, 11))  # mostly kept, so that some states load
            if fate == 0:
                out[key] = draw(values)
            elif fate != 1:
                out[key] = value
        return out

    steps = draw(st.integers(0, 30))
    counters = {
        "version": 2,
        "steps_per_epoch": draw(st.integers(1, 9)),
        "epoch": draw(st.integers(0, 9)),
        "batches_in_epoch": draw(st.integers(0, steps)),
        "steps": steps,
        "pass": draw(st.integers(0, 4)),
        "batches_in_pass": draw(st.integers(0, steps)),
    }
    position = {
        "position": draw(ints),
        "samples_in_pass": draw(ints),
        "pass_seeds": {"seed": draw(ints)},
    }
    resume = fill(
        {
            key: fill({k: position.get(k, v) for k, v in value.items()})
            if isinstance(value, dict) and key not in ("fingerprint",)
            else value
            for key, value in real["resume"].items()
        }
    )
    state: Any = {**fill(counters), "resume": resume}
    if draw(st.integers(0, 19)) == 0:
        state = draw(values)  # not even a dict, mostly
    return kind, state


# ----------------------------------------------------------------------------- the fuzzers


@FUZZ
@given(mutated_states())
def test_mutated_states_load_or_are_refused_cleanly(case: tuple[str, dict[str, Any]]) -> None:
    kind, state = case
    check_load(kind, state)


@FUZZ
@given(random_states())
def test_random_dicts_load_or_are_refused_cleanly(case: tuple[str, Any]) -> None:
    kind, state = case
    check_load(kind, state)


@pytest.mark.parametrize("kind", KINDS)
def test_every_real_state_loads_and_resumes(kind: str) -> None:
    for state in VALID[kind]:
        assert check_load(kind, state) == "loaded"


@pytest.mark.parametrize("source", KINDS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_state_of_another_kind_of_loader_is_refused(kind: str, source: str) -> None:
    if kind != source:
        for state in VALID[source]:
            assert check_load(kind, state) == "refused"


# ---------------------------------------------------- the holes the fuzzers found (issue 8)


def _edited(kind: str, path: tuple[Any, ...], value: Any, steps: int = 4) -> dict[str, Any]:
    """A real state of ``kind`` after ``steps`` (0, 3, 4 or 9) steps, with one value changed."""
    state = copy.deepcopy(VALID[kind][(0, 3, 4, 9).index(steps)])
    parent = state
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return state


# States that loaded and then failed at the first next(), found by the fuzzers; now refused.
CLOSED_HOLES = [
    (
        "fingerprint key not a string",  # (torch.load gives back what was saved)
        "seek",
        ("resume", "fingerprint", 3),
        "x",
        TypeError,
        r"state\['resume'\]\['fingerprint'\] keys must be strings \(got 3 of type int\)",
    ),
    (
        "seek: another pass",  # was: RuntimeError "the sampler ran out" at the first batch
        "seek",
        ("pass",),
        1,
        ValueError,
        r"state\['pass'\] is 1, but a loader over an endless SeekableSampler has a single pass",
    ),
    (
        "seek: position near 2**63",  # was: OverflowError at the first batch
        "seek",
        ("resume", "seek", "position"),
        2**63 - 1,
        ValueError,
        (
            r"state\['resume'\]\['seek'\]\['position'\] must be at most 2\*\*62 for "
            r"InfiniteSampler \(got 9223372036854775807\)"
        ),
    ),
    (
        "replay: beyond a list's pass",  # was: ValueError "cannot resume" at the first batch
        "replay-list",
        ("batches_in_pass",),
        4,
        ValueError,
        r"state\['batches_in_pass'\] is 4, more than the 3 batches in a pass of this loader",
    ),
    (
        "skip: beyond a batch sampler's pass",
        "skip-batch-sampler",
        ("batches_in_pass",),
        6,
        ValueError,
        r"state\['batches_in_pass'\] is 6, more than the 5 batches in a pass of this loader",
    ),
    (
        "delegate: an inner value that does not decode",  # was: binascii.Error at next()
        "delegate-dataset",
        ("resume", "delegate", "inner"),
        {"__tensor__": "not base64"},
        ValueError,
        r"state\['resume'\]\['delegate'\]\['inner'\] holds an encoded value that does not decode",
    ),
]


@pytest.mark.parametrize(
    ("kind", "path", "value", "error", "message"),
    [case[1:] for case in CLOSED_HOLES],
    ids=[case[0] for case in CLOSED_HOLES],
)
def test_what_used_to_fail_at_the_first_batch_is_refused_at_load(
    kind: str, path: tuple[Any, ...], value: Any, error: type, message: str
) -> None:
    state = _edited(kind, path, value, steps=9 if kind == "skip-batch-sampler" else 4)
    with pytest.raises(error, match=message):
        make(kind).load_state_dict(state)
    assert check_load(kind, state) == "refused"  # and the loader is as it was


def test_replay_beyond_the_pass_of_an_iterable_without_length() -> None:
    # Documented limit: a loader without a length cannot tell at load time that a saved
    # position is past the end of its pass; the first batch says so.
    state = _edited("replay-iterable", ("batches_in_pass",), 4)
    vl = make("replay-iterable")
    vl.load_state_dict(state)
    with pytest.raises(
        ValueError, match=r"cannot resume: pass 1 of .* ended after 3 of the 4 batches to replay"
    ):
        next(iter(vl))


def _inner_case(kind: str, inner: Any, now: Any, what: str) -> Any:
    reason = (
        "delegate: an inner state that the wrapped loader accepts, and then trips over while "
        f"drawing batches, cannot be told from a data error: {what} at the first next()"
    )
    return pytest.param(
        kind, inner, marks=pytest.mark.xfail(strict=True, raises=now, reason=reason), id=what
    )


@pytest.mark.parametrize(
    ("kind", "inner"),
    [
        pytest.param(
            "delegate-stateful-dataloader",
            {},
            id="an empty inner state, which would restart the pass: its batches twice",
        ),
        pytest.param(
            "delegate-stateful-dataloader",
            {"_snapshot": 1},
            id="torchdata refuses it when the pass reopens",
        ),
        _inner_case("delegate-dataset", {"position": "x"}, TypeError, "TypeError"),
    ],
)
def test_delegate_inner_state_is_checked_at_load(kind: str, inner: Any) -> None:
    state = copy.deepcopy(VALID[kind][1])  # mid-pass
    state["resume"]["delegate"]["inner"] = inner
    vl = make(kind)
    with pytest.raises(ValueError, match=r"state\['resume'\]\['delegate'\]\['inner'\]"):  # noqa: PT012
        vl.load_state_dict(state)
        list(vl)  # (as it is: the load passes, and the error, if any, comes here)


@pytest.mark.parametrize(("inner", "said"), [({}, "empty"), (None, "None")])
def test_a_missing_inner_state_is_refused_inside_a_pass_and_accepted_at_its_start(
    inner: Any, said: str
) -> None:
    # None means "a fresh pass", and torchdata reads {} as "no state": inside a pass, either
    # would start the pass again, and its batches would come twice.
    state = copy.deepcopy(VALID["delegate-stateful-dataloader"][1])  # mid-pass
    state["resume"]["delegate"]["inner"] = inner
    vl = make("delegate-stateful-dataloader")
    before = vl.state_dict()
    with pytest.raises(
        ValueError,
        match=rf"state\['resume'\]\['delegate'\]\['inner'\] is {said}, but the wrapped loader's "
        rf"state must be "
        rf"{state['batches_in_pass']} batches into pass {state['pass']}: its position is missing "
        "and the pass would start again; the state is corrupt",
    ):
        vl.load_state_dict(state)
    assert vl.state_dict() == before
    # With 'replay' covering the whole way from the start of the pass, it loads.
    state["resume"]["delegate"]["replay"] = state["batches_in_pass"]
    vl.load_state_dict(state)
    with pytest.warns(UserWarning, match="replaying"):
        got = continuation(vl)
    reference = make("delegate-stateful-dataloader")
    reference.load_state_dict(VALID["delegate-stateful-dataloader"][1])  # the state as saved
    assert got == continuation(reference)
    # And at the start of a pass it means a fresh pass.
    start = copy.deepcopy(VALID["delegate-stateful-dataloader"][0])
    expected = continuation(make("delegate-stateful-dataloader"))
    start["resume"]["delegate"]["inner"] = inner
    vl.load_state_dict(start)
    assert continuation(vl) == expected


def test_an_inner_state_the_wrapped_loader_refuses_is_a_value_error_naming_the_key() -> None:
    # It loads (the inner state is the wrapped loader's business) and torchdata refuses it where
    # it applies it, when the pass reopens: the error names our key and keeps torchdata's.
    state = copy.deepcopy(VALID["delegate-stateful-dataloader"][1])
    state["resume"]["delegate"]["inner"] = {"_snapshot": 1}
    vl = make("delegate-stateful-dataloader")
    vl.load_state_dict(state)
    with pytest.raises(
        ValueError,
        match=r"state\['resume'\]\['delegate'\]\['inner'\] was refused by "
        r"<torchdata\.\S+\.StatefulDataLoader "
        r"object \.\.\. \(AssertionError: State doesn't contain key '_num_yielded' "
        r"expected for single process dataloader\): it was saved by a loader built differently "
        r"\(torchdata: another num_workers\), or by another version of it, or it is corrupt",
    ) as info:
        next(iter(vl))
    assert isinstance(info.value.__cause__, AssertionError)
