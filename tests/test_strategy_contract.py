"""The strategy contract: every shape of loader in the table goes through the same cases.

For each entry of ``_shapes_table.SHAPES``: the strategy chosen is the expected one; a restore
at any step continues exactly as the uninterrupted run; every state is plain (JSON,
``torch.load(weights_only=True)``) and a fresh loader that loads it gives the same state back;
``state_dict()`` is a pure read; the global RNG is where the uninterrupted run has it; a state of
another shape, or of other settings, is refused naming the key; an exception while a batch loads
reaches the caller and that batch comes again, nothing lost or repeated; and the warnings the
library gives on the way point at the line that iterates, in this file.

Adding a strategy, or a shape of loader, means one entry in the table: these cases follow.
"""

from __future__ import annotations

import copy
import functools
import inspect
import io
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import virtual_epochs
from _helpers import (
    FailAt,
    FailOnce,
    IndexDataset,
    assert_refused,
    assert_resumes_exactly,
    check_recovery,
    edit,
    plain,
    reference,
    round_trip,
    run_tagged,
    run_until_error,
)
from _shapes_table import (
    EPOCHS,
    IN_PROCESS,
    NAMES,
    SHAPES,
    STEPS_PER_EPOCH,
    N,
    Shape,
    advance,
    maker,
    saved,
)
from virtual_epochs import VirtualDataLoader

STEPS = EPOCHS * STEPS_PER_EPOCH
LIBRARY = str(Path(virtual_epochs.__file__).resolve().parent)

pytestmark = pytest.mark.timeout(120)  # the shape with workers starts many worker pools


@pytest.fixture(autouse=True)
def no_warning_points_into_the_library() -> Iterator[None]:
    """Every case: a warning the library gives names a line outside the library."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", "'set_vital' is deprecated")  # (torchdata's, torch's)
        yield
    for warning in caught:
        assert not str(Path(warning.filename).resolve()).startswith(LIBRARY), (
            f"a warning points into the library ({warning.filename}:{warning.lineno}): "
            f"{warning.message}"
        )


MID = 6  # a step inside an epoch (the second) and inside the first pass
SOME_STEPS = [0, 2, MID, 7, 12]  # where a case is too costly at every step (worker pools)


def steps_to_check(name: str) -> list[int]:
    """Every step for a shape loading in this process, some for one with worker processes."""
    return list(range(STEPS + 1)) if name in IN_PROCESS else SOME_STEPS


# ----------------------------------------------------------------- strategy and resume


@pytest.mark.parametrize("name", NAMES)
def test_the_expected_strategy_is_chosen(name: str) -> None:
    assert maker(name)().strategy == SHAPES[name].strategy


@pytest.mark.parametrize("name", NAMES)
def test_resume_at_every_step_equals_the_uninterrupted_run(name: str) -> None:
    assert_resumes_exactly(maker(name), epochs=EPOCHS)  # several passes of every shape


@pytest.mark.parametrize("name", NAMES)
def test_every_state_is_plain_and_loads_into_a_fresh_loader_as_the_same_state(name: str) -> None:
    vl = maker(name)()
    states = [vl.state_dict()]
    for _ in range(EPOCHS):
        states.extend(vl.state_dict() for _ in vl)
    for step in steps_to_check(name):
        state = states[step]
        assert round_trip(state) == state, f"step {step}: JSON changed the state"
        buffer = io.BytesIO()
        torch.save(state, buffer)
        buffer.seek(0)
        assert torch.load(buffer, weights_only=True) == state, f"step {step}: torch.load"
        fresh = maker(name)()
        fresh.load_state_dict(round_trip(state))
        assert fresh.state_dict() == state, f"step {step}: a fresh loader gave another state"
        assert (fresh.steps, fresh.epoch, len(fresh)) == (step, state["epoch"], STEPS_PER_EPOCH)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_is_a_pure_read(name: str) -> None:
    # However often a state is taken (and whatever is done to the dicts returned), the data
    # stream is the same, and nothing more is loaded.
    plain_run = IndexDataset(N)
    expected = run_tagged(maker(name, plain_run)(), EPOCHS)
    observed = IndexDataset(N)
    vl = maker(name, observed)()
    got = []
    for epoch in range(EPOCHS):
        for _ in range(3):
            scribble(vl.state_dict())
        for batch in vl:
            got.append((epoch, plain(batch)))
            first = vl.state_dict()
            kept = copy.deepcopy(first)
            scribble(first)
            for _ in range(3):
                again = vl.state_dict()
                assert again == kept  # (a dict shared with the loader would be scribbled)
                scribble(again)
    assert got == expected
    if name in IN_PROCESS:
        assert observed.loaded == plain_run.loaded


def scribble(state: dict[str, Any]) -> None:
    """Change every value in a returned state: a state is fresh, nothing shared with the loader."""
    for key, value in list(state.items()):
        if isinstance(value, dict):
            scribble(value)
        else:
            state[key] = ("scribbled", value)


@functools.cache
def rng_after_resume(name: str) -> dict[int, tuple[bool, bool]]:
    """For each step checked: (at the start of a pass, the resumed run drew as the original)."""
    make = maker(name)
    saved_at: dict[int, tuple[dict[str, Any], torch.Tensor]] = {}
    wanted = set(steps_to_check(name))

    def train(vl: VirtualDataLoader[Any]) -> list[float]:
        # A training step draws random numbers (dropout, say) for every batch.
        out = []
        for _ in range(vl.epoch, EPOCHS):
            for _ in vl:
                out.append(torch.rand(()).item())
                if vl.steps in wanted:
                    saved_at[vl.steps] = (vl.state_dict(), torch.get_rng_state())
        return out

    vl = make()
    torch.manual_seed(0)
    saved_at[0] = (vl.state_dict(), torch.get_rng_state())
    expected = train(vl)
    out = {}
    for step, (state, rng) in sorted(saved_at.items()):
        resumed = make()
        resumed.load_state_dict(round_trip(state))
        torch.set_rng_state(rng)
        out[step] = (state["batches_in_pass"] == 0, train(resumed) == expected[step:])
    return out


@pytest.mark.parametrize("name", NAMES)
def test_resuming_leaves_the_global_rng_where_the_uninterrupted_run_has_it(name: str) -> None:
    results = rng_after_resume(name)
    assert len(results) >= len(SOME_STEPS)
    assert [step for step, (start, same) in results.items() if not start and not same] == []


# Resuming where a pass starts (step 0, or a state saved at the end of a pass) opens the pass's
# iterator where the uninterrupted run opened one too, and a DataLoader without a generator
# draws its workers' base seed from the global RNG when it does: the resumed run must make the
# same draw (it once opened it inside fork_rng, one draw behind), so that the training step's
# random numbers stay the same.
@pytest.mark.parametrize("name", NAMES)
def test_resuming_at_a_pass_start_leaves_the_global_rng_where_the_run_has_it(name: str) -> None:
    results = rng_after_resume(name)
    assert 0 in results
    assert [step for step, (start, same) in results.items() if start and not same] == []


@pytest.mark.parametrize("name", NAMES)
def test_the_stream_and_the_global_rng_repeat_after_reseeding(name: str) -> None:
    # Two runs from the same global seed, one of them saving at every step and reloading its
    # own state at every epoch inside a pass: the same batches, and the same random numbers
    # drawn by the training step. (At the start of a pass too.)
    def run(save_and_load: bool) -> tuple[list[Any], list[float]]:
        vl = maker(name)()  # (reseeds)
        stream, draws = [], []
        for _ in range(EPOCHS):
            state = vl.state_dict()
            if save_and_load and state["batches_in_pass"]:
                vl.load_state_dict(round_trip(state))
            for batch in vl:
                stream.append(plain(batch))
                if save_and_load:
                    vl.state_dict()
                draws.append(torch.rand(()).item())
        return stream, draws

    assert run(save_and_load=True) == run(save_and_load=False)


# ------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize("name", NAMES)
def test_a_state_of_another_strategy_is_refused_naming_the_strategy(name: str) -> None:
    strategy = SHAPES[name].strategy
    vl = advance(maker(name)(), 3)
    for source in NAMES:
        other = SHAPES[source].strategy
        if other == strategy:
            continue
        message = (
            rf"state\['resume'\]\['strategy'\] is '{other}', but this loader resumes by "
            rf"'{strategy}': the checkpoint comes from a differently built loader"
        )
        for steps in (0, 3, MID, 12):
            assert_refused(vl, saved(source, steps), ValueError, message)
    # Refused states changed nothing: the loader goes on as a twin that never saw them.
    assert run_tagged(vl, EPOCHS) == run_tagged(advance(maker(name)(), 3), EPOCHS)


# The states of another shape with the same strategy that load, and why that is right: they give
# the same sample order, and the saved position means the same samples.
LOADS_ACROSS = {
    ("infinite-sampler", "infinite-sampler-workers"),  # the number of workers may change
    ("infinite-sampler-workers", "infinite-sampler"),
    ("sequential", "sequential-drop-last"),  # the same order; the position is in samples
    ("sequential-drop-last", "sequential"),
    ("re-iterable-without-length", "re-iterable-verified"),  # the check is switched off
    # The wrapped loader's own state carries its sampler's generator, and the pass seeds are
    # the checkpoint's: the saved run's order goes on.
    ("stateful-dataloader", "stateful-dataloader-without-generator"),
    ("stateful-dataloader-without-generator", "stateful-dataloader"),
}
OTHER_BATCHES = {  # (drop_last, like the batch size, may change: the batches differ)
    ("sequential", "sequential-drop-last"),
    ("sequential-drop-last", "sequential"),
}


@pytest.mark.parametrize("name", NAMES)
def test_a_state_of_another_shape_with_the_same_strategy_is_refused(name: str) -> None:
    strategy = SHAPES[name].strategy
    for source in NAMES:
        if source == name or SHAPES[source].strategy != strategy:
            continue
        if (name, source) in LOADS_ACROSS:
            state = saved(source, MID)
            vl = maker(name)()
            vl.load_state_dict(state)
            got = run_tagged(vl, EPOCHS)
            if (name, source) not in OTHER_BATCHES:
                expected = maker(source)()
                expected.load_state_dict(state)
                assert got == run_tagged(expected, EPOCHS)
            continue
        vl = advance(maker(name)(), 3)
        for steps in (0, 3, MID, 12):
            state = saved(source, steps)
            unverified = (name, source) == ("re-iterable-verified", "re-iterable-without-length")
            if unverified and not state["batches_in_pass"]:
                maker(name)().load_state_dict(state)  # no digest at a pass start: none needed
                continue
            error = assert_refused(vl, state, ValueError, r"state\['resume'\]\[")
            assert re.search(r"\['fingerprint'\]\['\S+'\] is|has no 'digest'", str(error))
        assert run_tagged(vl, EPOCHS) == run_tagged(advance(maker(name)(), 3), EPOCHS)


def changed(value: Any) -> Any:
    """Another value of the same kind (a bool is not an int)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    return 1


@pytest.mark.parametrize("name", NAMES)
def test_a_changed_fingerprint_is_refused_naming_the_key(name: str) -> None:
    state = saved(name, MID)
    fingerprint = state["resume"]["fingerprint"]
    assert fingerprint, "a fingerprint records the settings that decide the order"
    vl = maker(name)()
    advance(vl, 3)
    path = ("resume", "fingerprint")
    for key, value in [*fingerprint.items(), ("color", ...)]:
        where = re.escape(f"state['resume']['fingerprint']['{key}']")
        if value is ...:  # an unknown setting
            bad, theirs, mine = edit(state, (*path, key), "red"), "'red'", "'<absent>'"
        else:
            bad = edit(state, (*path, key), changed(value))
            theirs, mine = repr(changed(value)), repr(value)
            missing = edit(state, (*path, key), ...)
            message = rf"{where} is '<absent>' but this loader has {re.escape(repr(value))}"
            assert_refused(vl, missing, ValueError, message)
        message = (
            rf"the checkpoint was saved with a different sample order: {where} is "
            rf"{re.escape(theirs)} but this loader has {re.escape(mine)}; resume with the "
            "settings that wrote the checkpoint, or start a new run"
        )
        assert_refused(vl, bad, ValueError, message)
    # Refused states changed nothing: the loader goes on as a twin that never saw them.
    assert run_tagged(vl, EPOCHS) == run_tagged(advance(maker(name)(), 3), EPOCHS)


# -------------------------------------------------------------------------------- faults


class DataError(Exception):
    """A failure of the user's data code (a corrupt sample, an unreachable file)."""


# The very first step, mid-epoch, the first of epoch 1, the last of the first pass (of 7
# batches), the first of the second, and one in a later pass.
FAIL_AT = [0, 2, 5, 6, 7, 13]
FAIL_AT_WITH_WORKERS = [0, 2, 5]  # (loads are not counted across processes: steps of pass 0)


def loads_before(name: str, step: int) -> int:
    """How many loads the uninterrupted run makes before the loads of batch ``step``."""
    dataset = IndexDataset(N)
    vl = maker(name, dataset)()
    while vl.steps < step:
        for _ in zip(range(step - vl.steps), vl, strict=False):
            pass
    return len(dataset.loaded)


FAULT_CASES = [
    pytest.param(name, step, id=f"{name}-step{step}")
    for name in NAMES
    for step in (FAIL_AT if name in IN_PROCESS else FAIL_AT_WITH_WORKERS)
    if SHAPES[name].loads
]


@pytest.mark.parametrize(("name", "step"), FAULT_CASES)
def test_an_exception_while_a_batch_loads_reaches_the_caller_and_nothing_is_lost(
    name: str, step: int, tmp_path: Path
) -> None:
    # (The list of ready batches is not here: nothing is loaded while it is iterated.)
    stream, states = reference(maker(name), EPOCHS)
    error = DataError("corrupt sample")
    if name in IN_PROCESS:
        dataset: Any = FailAt(IndexDataset(N), loads_before(name, step), error)
    else:  # a sample of that batch not loaded before (steps of the first pass)
        seen = {i for _, batch in stream[:step] for i in batch}
        bad = next(i for i in stream[step][1] if i not in seen)
        dataset = FailOnce(N, bad=bad, error=error, marker=tmp_path / "failed")
    vl = maker(name, dataset)()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "VirtualDataLoader is reopening")  # (delegate's replay)
        delivered, _, info = run_until_error(vl, EPOCHS, DataError, match="corrupt sample")
        if name in IN_PROCESS:
            assert info.value is error  # unchanged: the very object raised
        assert len(delivered) == step
        check_recovery(maker(name), vl, delivered, stream, states, EPOCHS)


# ------------------------------------------------------------------------------ warnings


@pytest.mark.parametrize("name", [name for name in IN_PROCESS if SHAPES[name].loads])
def test_warnings_point_at_the_line_that_iterates(name: str) -> None:
    # A restore mid-pass (replay warns that it loads the batches again), then a failed batch
    # in a later pass (delegate warns that it replays from its last consistent state): what
    # the library says on the way names this file, where the loop is.
    shape: Shape = SHAPES[name]
    state = saved(name, MID + 1 + 4)  # in the second pass
    dataset = FailAt(IndexDataset(N), 10**9, DataError("corrupt sample"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", "'set_vital' is deprecated")
        vl = maker(name, dataset)()
        vl.load_state_dict(state)
        batch = next(iter(vl))  # the line of the warnings
        line = current_line() - 1
        dataset.at = dataset.loads + 1  # a batch fails next
        iterator = iter(vl)
        with pytest.raises(DataError):
            drain(iterator)
        again = next(iter(vl))  # the line of the warnings
        line_again = current_line() - 1
    assert plain(batch) is not None
    assert plain(again) is not None
    ours = [w for w in caught if issubclass(w.category, UserWarning)]
    for warning in ours:
        assert warning.filename == __file__, f"{warning.message} points at {warning.filename}"
        assert warning.lineno in (line, line_again), f"{warning.message}: line {warning.lineno}"
    # replay warns once, at the first resume; delegate when it replays after the error.
    expected = {"replay": ["is resuming"], "delegate": ["is reopening"]}.get(shape.strategy, [])
    assert [re.search("is resuming|is reopening", str(w.message))[0] for w in ours] == expected


def current_line() -> int:
    """The line of the caller."""
    frame = inspect.currentframe()
    assert frame is not None
    assert frame.f_back is not None
    return frame.f_back.f_lineno


def drain(iterator: Iterator[Any]) -> None:
    """Draw from ``iterator`` until it stops."""
    for _ in iterator:
        pass
