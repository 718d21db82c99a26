"""Every refusal of a state, with its message pinned, in one place.

Three tables: a real state of a loader shape with one key broken (``BAD_KEYS``); a real state
loaded by a loader built with another setting (``OTHER_SETTINGS``); something that is not a
loader's state at all (``NOT_A_STATE``). Each refusal must leave the loader as it was: the same
state, the same batches after, and the dict it was given untouched.

(The refusal of a state of another strategy, or of a changed fingerprint, is one case of the
contract for every shape of the table: ``test_strategy_contract.py``. The fuzzers of
``test_fuzz_state.py`` hunt for the refusals not written here.)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from _helpers import assert_refused, edit, run_epochs
from _shapes_table import BATCH, STEPS_PER_EPOCH, advance, maker, saved
from virtual_epochs import InfiniteSampler, VirtualDataLoader

pytestmark = pytest.mark.filterwarnings("ignore:VirtualDataLoader is resuming")  # (replay's)

MID = 6  # a step inside the second epoch and the first pass

# (id, shape, steps saved, path, value (... deletes), error, message)
BadKey = tuple[str, str, int, tuple[Any, ...], Any, type, str]

REPLAY_KEY = r"state\['resume'\]\['delegate'\]\['replay'\]"
BETWEEN = REPLAY_KEY + r" must be between 1 and state\['batches_in_pass'\] = 3"


def missing_inner(said: str) -> str:
    return (
        rf"state\['resume'\]\['delegate'\]\['inner'\] is {said}, but the wrapped loader's state "
        r"must be 3 batches into pass 0: its position is missing and the pass would start again; "
        "the state is corrupt"
    )


BAD_KEYS: list[BadKey] = [
    # --- the counters and the format (any shape: the infinite sampler's)
    ("missing version", "infinite-sampler", MID, ("version",), ..., ValueError,
     r"state has no key 'version'"),
    ("unknown version", "infinite-sampler", MID, ("version",), 3, ValueError,
     r"state\['version'\] is 3, but this version of virtual_epochs reads versions 1, 2 only"),
    ("version as text", "infinite-sampler", MID, ("version",), "1", TypeError,
     r"state\['version'\] must be of type int"),
    ("missing steps", "infinite-sampler", MID, ("steps",), ..., ValueError,
     r"state has no key 'steps' \(found keys"),
    ("negative steps", "infinite-sampler", MID, ("steps",), -1, ValueError,
     r"state\['steps'\] must be an int >= 0 \(got -1\)"),
    ("bool counter", "infinite-sampler", MID, ("epoch",), True, TypeError,
     r"state\['epoch'\] must be of type int \(got True of type bool\)"),
    ("float counter", "infinite-sampler", MID, ("pass",), 1.0, TypeError,
     r"state\['pass'\] must be of type int"),
    ("zero epoch length", "infinite-sampler", MID, ("steps_per_epoch",), 0, ValueError,
     r"state\['steps_per_epoch'\] must be an int >= 1 \(got 0\)"),
    ("more batches in epoch than steps", "infinite-sampler", MID, ("batches_in_epoch",), 10**6,
     ValueError, r"state\['batches_in_epoch'\] \(1000000\) cannot exceed state\['steps'\]"),
    ("more batches in pass than steps", "infinite-sampler", MID, ("batches_in_pass",), 10**6,
     ValueError, r"state\['batches_in_pass'\] \(1000000\) cannot exceed state\['steps'\]"),
    ("missing resume", "infinite-sampler", MID, ("resume",), ..., ValueError,
     r"state has no key 'resume'"),
    ("resume not a dict", "infinite-sampler", MID, ("resume",), [1], TypeError,
     r"state\['resume'\] must be of type Mapping"),
    ("other strategy", "infinite-sampler", MID, ("resume", "strategy"), "skip", ValueError,
     r"state\['resume'\]\['strategy'\] is 'skip', but this loader resumes by 'seek'"),
    ("missing fingerprint", "infinite-sampler", MID, ("resume", "fingerprint"), ..., ValueError,
     r"state\['resume'\] has no key 'fingerprint'"),
    ("the strategy's own part missing", "infinite-sampler", MID, ("resume", "seek"), ...,
     ValueError, r"state\['resume'\] has no key 'seek'"),
    # --- the fingerprint
    ("other seed", "infinite-sampler", MID, ("resume", "fingerprint", "seed"), 2, ValueError,
     (r"different sample order: state\['resume'\]\['fingerprint'\]\['seed'\] is 2 but this "
     r"loader has 1")),
    ("other dataset size", "infinite-sampler", MID, ("resume", "fingerprint", "num_samples"), 21,
     ValueError, r"\['num_samples'\] is 21 but this loader has 20"),
    ("shuffle as int", "infinite-sampler", MID, ("resume", "fingerprint", "shuffle"), 1,
     ValueError, r"\['shuffle'\] is 1 but this loader has True"),
    ("extra fingerprint key", "infinite-sampler", MID, ("resume", "fingerprint", "color"), "red",
     ValueError, r"\['color'\] is 'red' but this loader has '<absent>'"),
    # (torch.load gives back what was saved; found by the fuzzers, was: an error at next())
    ("fingerprint key not a string", "infinite-sampler", MID, ("resume", "fingerprint", 3), "x",
     TypeError, r"state\['resume'\]\['fingerprint'\] keys must be strings \(got 3 of type int\)"),
    # --- seek
    ("missing position", "infinite-sampler", MID, ("resume", "seek", "position"), ...,
     ValueError, r"state\['resume'\]\['seek'\] has no key 'position'"),
    ("negative position", "infinite-sampler", MID, ("resume", "seek", "position"), -3,
     ValueError, r"state\['resume'\]\['seek'\]\['position'\] must be an int >= 0 \(got -3\)"),
    ("position beyond 2**62", "infinite-sampler", MID, ("resume", "seek", "position"),
     2**62 + 1, ValueError,
     (r"state\['resume'\]\['seek'\]\['position'\] must be at most 2\*\*62 for InfiniteSampler "
     r"\(got 4611686018427387905\)")),
    # (found by the fuzzers; was: an OverflowError at the first batch)
    ("position near 2**63", "infinite-sampler", MID, ("resume", "seek", "position"), 2**63 - 1,
     ValueError,
     (r"state\['resume'\]\['seek'\]\['position'\] must be at most 2\*\*62 for InfiniteSampler "
     r"\(got 9223372036854775807\)")),
    # (found by the fuzzers; was: "the sampler ran out" at the first batch)
    ("seek state of another pass", "infinite-sampler", MID, ("pass",), 1, ValueError,
     r"state\['pass'\] is 1, but a loader over an endless SeekableSampler has a single pass"),
    # --- skip
    ("skip: position beyond the pass", "shuffle-with-generator", MID,
     ("resume", "skip", "samples_in_pass"), 21, ValueError,
     r"state\['resume'\]\['skip'\]\['samples_in_pass'\] is 21, more than the 20 samples"),
    ("skip: adopted seed not an int", "shuffle-without-generator", MID,
     ("resume", "skip", "pass_seeds", "seed"), "x", TypeError,
     r"state\['resume'\]\['skip'\]\['pass_seeds'\]\['seed'\] must be of type int"),
    ("skip: beyond a batch sampler's pass", "custom-batch-sampler", 12, ("batches_in_pass",), 12,
     ValueError,
     r"state\['batches_in_pass'\] is 12, more than the 11 batches in a pass of this loader"),
    # --- replay
    ("replay: beyond a list's pass", "list-of-batches", 9, ("batches_in_pass",), 8, ValueError,
     r"state\['batches_in_pass'\] is 8, more than the 7 batches in a pass of this loader"),
    ("replay: no digest with verify_replay", "re-iterable-verified", MID,
     ("resume", "replay", "digest"), ..., ValueError,
     (r"state\['resume'\]\['replay'\] has no 'digest': the checkpoint was saved without "
     r"verify_replay=True, so there is nothing to check the replayed batches against; resume "
     r"it with verify_replay=False")),
    # --- delegate
    ("delegate: an inner value that does not decode", "iterable-dataset-with-state", MID,
     ("resume", "delegate", "inner"), {"__tensor__": "not base64"}, ValueError,
     r"state\['resume'\]\['delegate'\]\['inner'\] holds an encoded value that does not decode"),
    ("delegate: an empty inner state", "stateful-dataloader", 3,
     ("resume", "delegate", "inner"), {}, ValueError, missing_inner("empty")),
    ("delegate: no inner state", "stateful-dataloader", 3,
     ("resume", "delegate", "inner"), None, ValueError, missing_inner("None")),
    ("delegate: replay zero", "stateful-dataloader", 3, ("resume", "delegate", "replay"), 0,
     ValueError, BETWEEN + r" \(got 0\): the state is corrupt"),
    ("delegate: replay more than the pass", "stateful-dataloader", 3,
     ("resume", "delegate", "replay"), 4, ValueError,
     BETWEEN + r" \(got 4\): the state is corrupt"),
    ("delegate: replay negative", "stateful-dataloader", 3, ("resume", "delegate", "replay"), -1,
     ValueError, REPLAY_KEY + r" must be an int >= 0 \(got -1\)"),
    ("delegate: replay bool", "stateful-dataloader", 3, ("resume", "delegate", "replay"), True,
     TypeError, r"\['replay'\] must be of type int \(got True of type bool\)"),
    ("delegate: replay str", "stateful-dataloader", 3, ("resume", "delegate", "replay"), "1",
     TypeError, r"\['replay'\] must be of type int \(got '1' of type str\)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "steps", "path", "value", "error", "message"),
    [case[1:] for case in BAD_KEYS],
    ids=[case[0] for case in BAD_KEYS],
)
def test_a_broken_key_is_refused_naming_it_and_nothing_changes(
    name: str, steps: int, path: tuple[Any, ...], value: Any, error: type, message: str
) -> None:
    real = saved(name, steps)
    parent = real
    for key in path[:-1]:
        parent = parent[key]
    # A key the real state holds, or one it may hold (a replay count, after an error; a setting).
    assert path[-1] in parent or path[-1] == "replay" or path[-2] == "fingerprint"
    state = edit(real, path, value)
    vl = advance(maker(name)(), 2 * STEPS_PER_EPOCH)  # somewhere else in the stream
    before = vl.state_dict()
    assert_refused(vl, state, error, message)
    reference = maker(name)()
    reference.load_state_dict(before)
    assert run_epochs(vl, 5) == run_epochs(reference, 5)


# ----------------------------------------------------- a loader built with other settings

# Variants of the table's "infinite-sampler" and "shuffle-with-generator" with one setting
# changed (the table has one loader per shape, these need the same shape twice).


def seek_over(n: int, seed: int = 3, shuffle: bool = True) -> VirtualDataLoader[Any]:
    loader = DataLoader(
        range(n), batch_size=BATCH, sampler=InfiniteSampler(n, seed=seed, shuffle=shuffle)
    )
    return VirtualDataLoader(loader, STEPS_PER_EPOCH)


def skip_over(n: int, seed: int | None = 3, shuffle: bool = True) -> VirtualDataLoader[Any]:
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    loader = DataLoader(range(n), batch_size=BATCH, shuffle=shuffle, generator=generator)
    return VirtualDataLoader(loader, STEPS_PER_EPOCH)


def ranks_of(replicas: int) -> VirtualDataLoader[Any]:
    sampler = DistributedSampler(range(20), num_replicas=replicas, rank=0, seed=1)
    return VirtualDataLoader(DataLoader(range(20), batch_size=2, sampler=sampler), 3)


Make = Callable[[], VirtualDataLoader[Any]]

OTHER_SETTINGS: list[tuple[str, Make, Make, type, str]] = [
    (
        "seek: the dataset grew",
        lambda: seek_over(12),
        lambda: seek_over(13),
        ValueError,
        (
            r"the checkpoint was saved with a different sample order: "
            r"state\['resume'\]\['fingerprint'\]\['num_samples'\] is 12 but this loader has 13; "
            r"resume with the settings that wrote the checkpoint, or start a new run"
        ),
    ),
    (
        "seek: another seed",
        lambda: seek_over(12, seed=3),
        lambda: seek_over(12, seed=4),
        ValueError,
        r"\['fingerprint'\]\['seed'\] is 3 but this loader has 4",
    ),
    (
        "seek: shuffle turned off",
        lambda: seek_over(12),
        lambda: seek_over(12, shuffle=False),
        ValueError,
        r"\['fingerprint'\]\['shuffle'\] is True but this loader has False",
    ),
    (
        "skip: the dataset shrank",
        lambda: skip_over(12),
        lambda: skip_over(11),
        ValueError,
        r"state\['resume'\]\['fingerprint'\]\['dataset_size'\] is 12 but this loader has 11",
    ),
    (
        "skip: another generator seed",
        lambda: skip_over(12, seed=3),
        lambda: skip_over(12, seed=4),
        ValueError,
        r"\['fingerprint'\]\['generator_seed'\] is 3 but this loader has 4",
    ),
    (
        "skip: shuffle turned off (another sampler)",
        lambda: skip_over(12),
        lambda: skip_over(12, shuffle=False),
        ValueError,
        r"\['fingerprint'\]\['generator_seed'\] is 3 but this loader has '<absent>'",
    ),
    (
        "skip: DistributedSampler on another number of ranks",
        lambda: ranks_of(2),
        lambda: ranks_of(3),
        ValueError,
        r"\['sampler.num_replicas'\] is 2 but this loader has 3",
    ),
    (
        "another kind of loader (another run's checkpoint)",
        lambda: skip_over(12),
        lambda: seek_over(12),
        ValueError,
        (
            r"state\['resume'\]\['strategy'\] is 'skip', but this loader resumes by 'seek': the "
            r"checkpoint comes from a differently built loader"
        ),
    ),
    (
        "a list of batches, then a DataLoader",
        lambda: VirtualDataLoader([[0, 1], [2, 3]], STEPS_PER_EPOCH),
        lambda: VirtualDataLoader(DataLoader(range(4), batch_size=2), STEPS_PER_EPOCH),
        ValueError,
        r"\['strategy'\] is 'replay', but this loader resumes by 'skip'",
    ),
]


@pytest.mark.parametrize(
    ("saver", "loader", "error", "message"),
    [case[1:] for case in OTHER_SETTINGS],
    ids=[case[0] for case in OTHER_SETTINGS],
)
def test_checkpoint_of_another_setting_is_refused_naming_what_differs(
    saver: Make, loader: Make, error: type, message: str
) -> None:
    state = advance(saver(), MID).state_dict()
    assert_refused(loader(), state, error, message)


# ------------------------------------------------------------------- not a loader's state

NOT_A_STATE: list[tuple[str, Any, type, str]] = [
    *[
        (
            f"not a dict: {state!r}",
            state,
            TypeError,
            r"'state_dict' must be a dict returned by VirtualDataLoader",
        )
        for state in [None, [], "state", 3]
    ],
    (
        "an optimizer's state",
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1).state_dict(),
        ValueError,
        (
            r"state has no key 'version' \(found keys \['param_groups', 'state'\]\); "
            r"pass a dict returned by VirtualDataLoader.state_dict\(\)"
        ),
    ),
    (
        "the sampler's own state",
        InfiniteSampler(12, seed=3).state_dict(),
        ValueError,
        (
            r"state has no key 'steps_per_epoch' \(found keys \['num_samples', 'seed', "
            r"'shuffle', 'shuffle_order', 'start', 'version'\]\)"
        ),
    ),
    (
        "the whole checkpoint",
        {"data": {"version": 1}},
        ValueError,
        r"state has no key 'version' \(found keys \['data'\]\)",
    ),
]


@pytest.mark.parametrize(
    ("state", "error", "message"),
    [case[1:] for case in NOT_A_STATE],
    ids=[case[0] for case in NOT_A_STATE],
)
def test_something_else_than_a_state_is_refused_naming_what_is_missing(
    state: Any, error: type, message: str
) -> None:
    assert_refused(advance(maker("infinite-sampler")(), 3), state, error, message)


def test_a_version_2_state_with_a_key_beside_the_strategys_own_is_refused() -> None:
    # Version 2 nests the strategy's keys; a flat key beside them (a half-converted version-1
    # state) is corrupt, and nothing is applied.
    state = saved("infinite-sampler", MID)
    state["resume"]["position"] = 3
    vl = maker("infinite-sampler")()
    before = vl.state_dict()
    with pytest.raises(
        ValueError,
        match=re.escape(
            "state['resume'] has an unexpected key 'position' (a 'seek' state holds 'strategy', "
            "'fingerprint' and 'seek'): the state is corrupt"
        ),
    ):
        vl.load_state_dict(state)
    assert vl.state_dict() == before
