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
from collections.abc import Sized
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _helpers import FailOnce, plain, round_trip
from _shapes_table import (
    IN_PROCESS,
    PASS_BATCHES,
    SHAPES,
    STEPS_PER_EPOCH,
    N,
    advance,
    maker,
    saved,
)
from virtual_epochs import VirtualDataLoader

pytestmark = [  # the replay cost warnings: of the replay strategy, and after an error
    pytest.mark.filterwarnings("ignore:VirtualDataLoader is resuming"),
    pytest.mark.filterwarnings("ignore:VirtualDataLoader is reopening"),
]

KINDS = IN_PROCESS  # every shape of the table without worker processes (they start slowly)
SAVED_AT = (0, 3, 5, 7, 12)  # the start, mid-epoch, an epoch's end, a pass's end, passes in


def make(kind: str) -> VirtualDataLoader[Any]:
    return maker(kind)()  # (the global RNG seeded: the adopted seed of a shuffle is the same)


def _after_error(checkpoint_at: int | None) -> dict[str, Any]:
    """A real delegate state taken right after a batch failed at step 3 (with a replay count)."""
    kind = "stateful-dataloader"
    bad = plain(list(make(kind))[3])[0]  # a sample of batch 3, first loaded there
    with tempfile.TemporaryDirectory() as scratch:
        dataset = FailOnce(N, bad, RuntimeError("a corrupt sample"), Path(scratch) / "failed")
        vl = maker(kind, dataset)()
        with pytest.raises(RuntimeError, match="a corrupt sample"):  # noqa: PT012
            for _ in vl:
                if vl.steps == checkpoint_at:
                    vl.state_dict()
    state = round_trip(vl.state_dict())
    assert (state["steps"], state["resume"]["delegate"]["replay"]) == (3, 3 - (checkpoint_at or 0))
    return state


def _valid_states() -> dict[str, list[dict[str, Any]]]:
    """Real states of every kind, at ``SAVED_AT``; for "stateful-dataloader" also after a failed
    batch (its last two)."""
    out = {kind: [saved(kind, steps) for steps in SAVED_AT] for kind in KINDS}
    out["stateful-dataloader"] += [_after_error(None), _after_error(2)]
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

    Recognised by what the state holds and the type of the error, never by its text. Each has
    a test below (a strict xfail while it is a bug); when one is closed, remove its line here
    too.
    """
    if loading:  # refused, with an unclear message: no known case left
        return None
    # loaded, then failed to iterate
    shape = SHAPES[kind]
    if (
        shape.strategy == "replay"
        and not isinstance(shape.loader(), Sized)
        and isinstance(error, ValueError)
        and state["batches_in_pass"] > PASS_BATCHES
    ):
        return "replay-beyond-pass"  # test_replay_beyond_the_pass_of_an_iterable_without_length
    if (
        shape.strategy == "delegate"
        and isinstance(error, (TypeError, ValueError))
        and _inner(state) not in _valid_inner(kind)
    ):
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


# (A state of another kind of loader: test_strategy_contract.py, for every pair of shapes.)


# ---------------------------------------------------- the holes the fuzzers found (issue 8)


# The holes since closed are refused at load, with their messages pinned in test_refusals.py
# (BAD_KEYS: "found by the fuzzers").


def test_replay_beyond_the_pass_of_an_iterable_without_length() -> None:
    # Documented limit: a loader without a length cannot tell at load time that a saved
    # position is past the end of its pass; the first batch says so.
    state = saved("re-iterable-without-length", 12)  # 5 batches into pass 1
    state["batches_in_pass"] = PASS_BATCHES + 1
    vl = make("re-iterable-without-length")
    vl.load_state_dict(state)
    with pytest.raises(
        ValueError, match=r"cannot resume: pass 1 of .* ended after 7 of the 8 batches to replay"
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
            "stateful-dataloader",
            {},
            id="an empty inner state, which would restart the pass: its batches twice",
        ),
        pytest.param(
            "stateful-dataloader",
            {"_snapshot": 1},
            id="torchdata refuses it when the pass reopens",
        ),
        _inner_case("iterable-dataset-with-state", {"position": "x"}, TypeError, "TypeError"),
    ],
)
def test_delegate_inner_state_is_checked_at_load(kind: str, inner: Any) -> None:
    state = saved(kind, 3)  # mid-pass
    state["resume"]["delegate"]["inner"] = inner
    vl = make(kind)
    with pytest.raises(ValueError, match=r"state\['resume'\]\['delegate'\]\['inner'\]"):  # noqa: PT012
        vl.load_state_dict(state)
        list(vl)  # (as it is: the load passes, and the error, if any, comes here)


@pytest.mark.parametrize("inner", [{}, None])
def test_a_missing_inner_state_loads_with_a_replay_from_the_start_and_at_a_pass_start(
    inner: Any,
) -> None:
    # None means "a fresh pass", and torchdata reads {} as "no state": inside a pass, either
    # would start the pass again, and its batches would come twice, so it is refused there
    # (test_refusals.py), unless 'replay' covers the whole way from the start of the pass.
    kind = "stateful-dataloader"
    state = saved(kind, 3)  # mid-pass
    state["resume"]["delegate"]["inner"] = inner
    state["resume"]["delegate"]["replay"] = state["batches_in_pass"]
    vl = make(kind)
    vl.load_state_dict(state)
    with pytest.warns(UserWarning, match="replaying"):
        got = continuation(vl)
    reference = make(kind)
    reference.load_state_dict(saved(kind, 3))  # the state as saved
    assert got == continuation(reference)
    # And at the start of a pass it means a fresh pass.
    start = saved(kind, 0)
    expected = continuation(make(kind))
    start["resume"]["delegate"]["inner"] = inner
    vl.load_state_dict(start)
    assert continuation(vl) == expected


def test_an_inner_state_the_wrapped_loader_refuses_is_a_value_error_naming_the_key() -> None:
    # It loads (the inner state is the wrapped loader's business) and torchdata refuses it where
    # it applies it, when the pass reopens: the error names our key and keeps torchdata's.
    state = saved("stateful-dataloader", 3)
    state["resume"]["delegate"]["inner"] = {"_snapshot": 1}
    vl = make("stateful-dataloader")
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
