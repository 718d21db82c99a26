"""Train a small network with virtual epochs, kill it with SIGKILL, resume, and prove it exact.

The demo behind ``make demo``. It trains an MLP on scikit-learn's bundled digits dataset (1797
8x8 images, no download), randomly augmented (each image shifted by up to a pixel and given
Gaussian noise, drawn from torch's global generator in ``__getitem__``), with a ``DataLoader``
over an ``InfiniteSampler`` and DataLoader workers, cut into virtual
epochs by ``VirtualDataLoader``: each epoch is ``--steps-per-epoch`` batches (by default a third
of a pass over the training data), so validation, checkpoints, the progress bar and the LR
schedule (``OneCycleLR`` sized from ``epochs * len(loader)``) come on a steady cadence whatever
the size of the dataset. Then it shows that training resumes exactly:

1. the reference: the whole run, uninterrupted, in this process (no workers by default);
2. the same run in a child process with DataLoader workers (2 by default) that checkpoints
   every few steps (mid-epoch too) and at the end of each epoch; this process kills it, workers
   and all, with SIGKILL at a random step;
3. the same command again, in a fresh process, with another number of workers (1 by default):
   it finds the last checkpoint and finishes the run from there, mid-epoch if that is where the
   checkpoint was taken.

Finally every tensor of the resumed model is compared with the reference's by ``torch.equal``:
they must be bitwise identical. The exit status is 0 only if they are.

What makes the resume exact:

- the data position: ``VirtualDataLoader.state_dict()`` in the checkpoint; with an
  ``InfiniteSampler`` inside, resuming seeks the sampler (O(1), nothing replayed);
- the augmentations: ``KeyedSampler`` and ``KeyedDataset`` seed each sample's random draws from
  its global sample position, so they do not depend on which worker loads it, on how many
  workers there are, or on where the run was resumed (worker seeds would give other shifts and
  noise after the restart); without workers the dataset puts the global RNG back after each
  batch, so dropout never sees the augmentations' draws;
- model, optimizer and LR scheduler states, and the global RNG state (the model has dropout);
- a ``DataLoader`` with a generator of its own, so that its workers' seeds never depend on
  the global RNG (``VirtualDataLoader`` itself leaves the global RNG untouched when it restarts
  the iterator at the resume point);
- determinism on CPU: one thread, ``torch.use_deterministic_algorithms(True)``, explicit seeds.

Checkpoints are written to a temporary file and renamed over the old one (``os.replace``), so a
kill in the middle of a write leaves the previous checkpoint intact.

Run ``python examples/train_digits.py --help`` for the options; ``--quick`` is a tiny
configuration for the tests, ``--no-kill`` trains once without the resume check.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn.functional import cross_entropy, pad
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm import tqdm

from virtual_epochs import InfiniteSampler, KeyedDataset, KeyedSampler, VirtualDataLoader

CHECKPOINT = "checkpoint.pt"
FINAL = "final.pt"
STEP_REPORT = "step"  # the watched child reports "step N" to the parent after each step
VERDICT_OK = "Verdict: IDENTICAL"
VERDICT_BAD = "Verdict: DIFFERENT"
BAR_FORMAT = "{desc}: {bar:20} {n_fmt:>3}/{total_fmt} [{elapsed}{postfix}]"

History = list[tuple[int, float, float]]  # (epoch, validation loss, validation accuracy)


@dataclass(frozen=True)
class Config:
    """Everything that decides the training run (and so its final weights)."""

    epochs: int
    steps_per_epoch: int
    batch_size: int
    checkpoint_every: int
    seed: int
    hidden: int = 256
    max_lr: float = 0.02

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def argv(self) -> list[str]:
        """The command-line options that rebuild this configuration in a child process."""
        return [
            f"--epochs={self.epochs}",
            f"--steps-per-epoch={self.steps_per_epoch}",
            f"--batch-size={self.batch_size}",
            f"--checkpoint-every={self.checkpoint_every}",
            f"--seed={self.seed}",
        ]


@dataclass(frozen=True)
class Workers:
    """DataLoader workers of the three runs; they change how samples are loaded, not which."""

    reference: int = 0
    killed: int = 2
    resumed: int = 1


@dataclass
class Trainer:
    """The stateful parts of one training run."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loader: VirtualDataLoader[list[torch.Tensor]]
    history: History = field(default_factory=list)


# --------------------------------------------------------------------------------- training


def make_deterministic() -> None:
    """Make CPU training bitwise reproducible in this process."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def load_data(seed: int) -> tuple[TensorDataset, TensorDataset]:
    """Return the digits dataset split 80/20 into training and validation sets."""
    digits = load_digits()
    x_train, x_val, y_train, y_val = train_test_split(
        digits.data / 16.0, digits.target, test_size=0.2, random_state=seed, stratify=digits.target
    )

    def tensors(x: Any, y: Any) -> TensorDataset:
        return TensorDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y))

    return tensors(x_train, y_train), tensors(x_val, y_val)


class Augmented(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """The training images, each shifted by up to one pixel and given noise, at random.

    The draws come from torch's global generator, as in most augmentation code (torchvision's
    transforms too); ``KeyedDataset`` seeds it for each sample from the sample's position.
    """

    def __init__(self, data: TensorDataset, noise: float = 0.05) -> None:
        self.images, self.labels = data.tensors
        self.noise = noise

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = pad(self.images[index].view(8, 8), (1, 1, 1, 1))  # a blank 1-pixel border
        dy, dx = torch.randint(0, 3, (2,)).tolist()
        shifted = image[dy : dy + 8, dx : dx + 8]
        noisy = shifted + self.noise * torch.randn(8, 8)
        return noisy.reshape(64), self.labels[index]


def build_trainer(cfg: Config, train_ds: TensorDataset, num_workers: int = 0) -> Trainer:
    """Build model, optimizer, schedule and loader, from the seed alone.

    ``num_workers`` changes how the samples are loaded, never which ones or how augmented.
    """
    torch.manual_seed(cfg.seed)
    model = nn.Sequential(
        nn.Linear(64, cfg.hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(cfg.hidden, 10)
    )
    loader = DataLoader(
        KeyedDataset(Augmented(train_ds)),
        batch_size=cfg.batch_size,
        # Each index comes with its global sample position, which keys its augmentation.
        sampler=KeyedSampler(InfiniteSampler(train_ds, seed=cfg.seed), seed=cfg.seed),
        num_workers=num_workers,
        # Its own generator, so that starting the DataLoader's iterator (which a resumed run does
        # at the resume point) does not draw from the global RNG that dropout uses.
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    vl = VirtualDataLoader(loader, steps_per_epoch=cfg.steps_per_epoch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.max_lr, weight_decay=1e-4)
    # The schedule spans exactly the run: len(vl) is the epoch length, always.
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.max_lr, total_steps=cfg.epochs * len(vl)
    )
    return Trainer(model, optimizer, scheduler, vl)


def train_step(t: Trainer, x: torch.Tensor, y: torch.Tensor) -> float:
    t.model.train()
    loss = cross_entropy(t.model(x), y)
    t.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    t.optimizer.step()
    t.scheduler.step()
    return loss.item()


@torch.no_grad()
def evaluate(model: nn.Module, val_ds: TensorDataset) -> tuple[float, float]:
    """Return the validation loss and accuracy of ``model``."""
    x, y = val_ds.tensors
    model.eval()
    logits = model(x)
    accuracy = (logits.argmax(dim=1) == y).double().mean().item()
    return cross_entropy(logits, y).item(), accuracy


def train(
    t: Trainer,
    cfg: Config,
    val_ds: TensorDataset,
    *,
    label: str,
    after_step: Callable[[], None] = lambda: None,
    after_epoch: Callable[[], None] = lambda: None,
) -> None:
    """Train from wherever ``t`` stands to the end of the last epoch.

    A restored loader resumes mid-epoch: its first iteration yields the rest of the saved epoch,
    and the bar starts at ``step_in_epoch``. One bar per epoch, on stdout (so that it stays in
    order with the rest of the output when piped); its last state shows the validation result.
    """
    vl = t.loader
    for epoch in range(vl.epoch, cfg.epochs):
        with tqdm(
            total=len(vl),
            initial=vl.step_in_epoch,
            desc=f"{label:>9} epoch {epoch + 1:>2}/{cfg.epochs}",
            bar_format=BAR_FORMAT,
            file=sys.stdout,
            # On a terminal, draw every step (a killed run's bar shows where it died); in a log,
            # draw the start and the end of each epoch only.
            mininterval=0 if sys.stdout.isatty() else 0.1,
        ) as bar:
            for x, y in vl:
                loss = train_step(t, x, y)
                bar.set_postfix_str(f"loss {loss:.3f}", refresh=False)
                bar.update()
                after_step()
            val_loss, val_acc = evaluate(t.model, val_ds)
            t.history.append((epoch, val_loss, val_acc))
            bar.set_postfix_str(f"val loss {val_loss:.3f}, val acc {val_acc:6.1%}", refresh=False)
        after_epoch()


# ------------------------------------------------------------------------------ checkpoints


def save_atomically(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename it over ``path``.

    ``os.replace`` is atomic, so a process killed mid-write leaves the previous file intact.
    (Surviving a power cut as well would take an ``fsync`` before the rename.)
    """
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(t: Trainer, path: Path) -> None:
    save_atomically(
        {
            "model": t.model.state_dict(),
            "optimizer": t.optimizer.state_dict(),
            "scheduler": t.scheduler.state_dict(),
            "loader": t.loader.state_dict(),
            "rng": torch.get_rng_state(),
            "history": t.history,
        },
        path,
    )


def load_checkpoint(t: Trainer, path: Path) -> None:
    state = torch.load(path, weights_only=True)
    t.model.load_state_dict(state["model"])
    t.optimizer.load_state_dict(state["optimizer"])
    t.scheduler.load_state_dict(state["scheduler"])
    t.loader.load_state_dict(state["loader"])
    torch.set_rng_state(state["rng"])
    t.history = as_history(state["history"])


def as_history(rows: Sequence[Sequence[float]]) -> History:
    """The validation history as saved, with its types restored."""
    return [(int(epoch), float(loss), float(accuracy)) for epoch, loss, accuracy in rows]


def checkpoint_position(path: Path) -> tuple[int, int, int] | None:
    """Return ``(steps, epoch, batch in epoch)`` of the checkpoint at ``path``, if there is one."""
    if not path.exists():
        return None
    loader = torch.load(path, weights_only=True)["loader"]
    return loader["steps"], loader["epoch"], loader["batches_in_epoch"]


# ------------------------------------------------------------------------- the child process


def run_child(cfg: Config, run_dir: Path, report_fd: int | None, num_workers: int) -> int:
    """Train with checkpoints in ``run_dir``, resuming from the last one if there is one.

    With ``report_fd`` (the parent watches this run to kill it): write ``step N`` there after
    each step, and should the run end before the kill lands, wait for it instead of exiting.
    """
    make_deterministic()
    train_ds, val_ds = load_data(cfg.seed)
    t = build_trainer(cfg, train_ds, num_workers)
    checkpoint = run_dir / CHECKPOINT
    if checkpoint.exists():
        load_checkpoint(t, checkpoint)
    report = None if report_fd is None else os.fdopen(report_fd, "w", buffering=1)

    def after_step() -> None:
        vl = t.loader
        # Mid-epoch checkpoints; the last step of an epoch is saved after its validation.
        if vl.steps % cfg.checkpoint_every == 0 and vl.step_in_epoch != 0:
            save_checkpoint(t, checkpoint)
        if report is not None:
            report.write(f"{STEP_REPORT} {vl.steps}\n")

    train(
        t,
        cfg,
        val_ds,
        label="restarted" if report is None else "child",
        after_step=after_step,
        after_epoch=lambda: save_checkpoint(t, checkpoint),
    )
    save_atomically({"model": t.model.state_dict(), "history": t.history}, run_dir / FINAL)
    if report is not None:
        sys.stdin.read()  # returns when the parent closes the pipe, which kills us first
    return 0


# ------------------------------------------------------------------------------- the parent


def child_command(
    cfg: Config, run_dir: Path, num_workers: int, report_fd: int | None = None
) -> list[str]:
    command = [
        sys.executable,
        __file__,
        *cfg.argv(),
        f"--run-dir={run_dir}",
        f"--workers={num_workers}",
        "--child",
    ]
    return command if report_fd is None else [*command, f"--report-fd={report_fd}"]


def run_and_kill(cfg: Config, run_dir: Path, kill_at: int, num_workers: int) -> tuple[int, int]:
    """Start the watched child and SIGKILL it, workers and all, once it reports step ``kill_at``.

    The child runs in a session of its own, and the signal goes to its whole process group, as
    a scheduler's preemption would: its DataLoader workers die with it (left alone, they would
    notice the orphaning only seconds later, holding the report pipe open meanwhile).

    Returns the step at which the kill was sent and the last step the child reported.
    """
    read_end, write_end = os.pipe()
    with subprocess.Popen(
        child_command(cfg, run_dir, num_workers, write_end),
        stdin=subprocess.PIPE,
        pass_fds=(write_end,),
        start_new_session=True,
    ) as child:
        os.close(write_end)  # the child holds the only write end: EOF when it dies
        sent_at = last = 0
        try:
            with os.fdopen(read_end) as reports:
                for line in reports:
                    last = int(line.removeprefix(STEP_REPORT))
                    if not sent_at and last >= kill_at:
                        os.killpg(child.pid, signal.SIGKILL)  # no cleanup, atexit or finally
                        sent_at = last
        finally:
            if not sent_at:
                os.killpg(child.pid, signal.SIGKILL)
            status = child.wait()
    if status != -signal.SIGKILL or not sent_at:
        raise RuntimeError(f"the child process ended with status {status} before it was killed")
    return sent_at, last


@dataclass
class Outcome:
    """How a training run ended."""

    weights: dict[str, torch.Tensor]
    history: History
    steps: int


def restart(cfg: Config, run_dir: Path, num_workers: int) -> Outcome:
    """Run the same training command again; return what it saved at the end."""
    subprocess.run(child_command(cfg, run_dir, num_workers), check=True)
    final = torch.load(run_dir / FINAL, weights_only=True)
    return Outcome(final["model"], as_history(final["history"]), cfg.total_steps)


def compare_weights(
    reference: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor]
) -> list[str]:
    """Return a line for each tensor that is not bitwise equal in both (empty: identical)."""
    problems = [f"{name}: missing" for name in sorted(reference.keys() ^ other.keys())]
    for name in sorted(reference.keys() & other.keys()):
        a, b = reference[name], other[name]
        if a.shape != b.shape or a.dtype != b.dtype:
            problems.append(f"{name}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}")
        elif not torch.equal(a, b):
            gap = (a.double() - b.double()).abs().max().item()
            problems.append(f"{name}: differs (max |difference| {gap:.3g})")
    return problems


def say(text: str = "") -> None:
    print(text, flush=True)


def print_header(
    cfg: Config, n_train: int, n_val: int, kill_note: str | None, workers: Workers
) -> None:
    samples = cfg.steps_per_epoch * cfg.batch_size
    say("Virtual epochs demo: fixed-length epochs, and a training run killed and resumed exactly")
    say(f"  data    scikit-learn digits: {n_train} training / {n_val} validation images, 8x8;")
    say("          random shifts (up to 1 pixel) and noise, keyed by each sample's position")
    say(f"  model   MLP 64-{cfg.hidden}-10 with dropout; AdamW; OneCycleLR over all steps")
    say(
        f"  epochs  {cfg.epochs} virtual epochs of {cfg.steps_per_epoch} batches of "
        f"{cfg.batch_size} = {samples} samples ({samples / n_train:.2f} of a pass); "
        f"{cfg.total_steps} steps"
    )
    if kill_note is None:
        return
    say(f"  plan    1. train without interruption ({plural(workers.reference)}): the reference")
    say(f"          2. train again in a child process ({plural(workers.killed)}) that")
    say(f"             checkpoints every {cfg.checkpoint_every} steps and after each epoch's")
    say(f"             validation; SIGKILL it at step {kill_note}")
    say(f"          3. run the same command again ({plural(workers.resumed)}): it resumes")
    say("             from the last checkpoint")
    say("          4. compare the final weights of 1 and 3 bit for bit")


def plural(workers: int) -> str:
    if workers == 0:
        return "no DataLoader workers"
    return f"{workers} DataLoader worker{'s' if workers > 1 else ''}"


def accuracy_line(outcome: Outcome) -> str:
    _, loss, accuracy = outcome.history[-1]
    return f"validation accuracy {accuracy:.1%} (loss {loss:.3f}) after {outcome.steps} steps"


def describe_position(position: tuple[int, int, int] | None, cfg: Config) -> str:
    if position is None:
        return "none yet: the restart begins from scratch"
    steps, epoch, in_epoch = position
    where = f"epoch {epoch + 1}, batch {in_epoch}/{cfg.steps_per_epoch}"
    if in_epoch == 0:
        where = f"end of epoch {epoch}, after its validation"
    return f"step {steps} ({where})"


def draw_kill_step(cfg: Config, kill_seed: int) -> int:
    """A random step after the first checkpoint and at least an epoch before the end."""
    low = max(1, min(cfg.checkpoint_every + 1, cfg.total_steps - 1))
    high = max(low, cfg.total_steps - cfg.steps_per_epoch)
    return random.Random(kill_seed).randint(low, high)


@contextlib.contextmanager
def run_directory(path: Path | None) -> Iterator[Path]:
    """``path`` with no checkpoint from an earlier run in it, or a temporary directory."""
    if path is None:
        with tempfile.TemporaryDirectory(prefix="virtual-epochs-demo-") as tmp:
            yield Path(tmp)
        return
    path.mkdir(parents=True, exist_ok=True)
    for name in (CHECKPOINT, CHECKPOINT + ".tmp", FINAL, FINAL + ".tmp"):
        (path / name).unlink(missing_ok=True)
    yield path


def reference_run(
    cfg: Config, train_ds: TensorDataset, val_ds: TensorDataset, num_workers: int
) -> Outcome:
    start = time.perf_counter()
    t = build_trainer(cfg, train_ds, num_workers)
    train(t, cfg, val_ds, label="reference")
    outcome = Outcome(t.model.state_dict(), t.history, t.loader.steps)
    say(f"  done in {time.perf_counter() - start:.1f} s: {accuracy_line(outcome)}")
    return outcome


def kill_and_resume(
    cfg: Config, run_dir: Path, kill_at: int, workers: Workers
) -> tuple[Outcome, str]:
    """Run the training in a child, kill it, restart it; return the outcome and what happened."""
    say(
        f"\n[2/4] The same run in a child process with {plural(workers.killed)}, to be killed "
        f"at step {kill_at}"
    )
    sent_at, last = run_and_kill(cfg, run_dir, kill_at, workers.killed)
    died = "" if last == sent_at else f"; it had reported step {last} when it died"
    say(f"\n  ** SIGKILL sent when the child reported step {sent_at}{died} **")
    position = checkpoint_position(run_dir / CHECKPOINT)
    say(f"  last checkpoint on disk: {describe_position(position, cfg)}")
    say(
        f"\n[3/4] The same command again, in a fresh process with {plural(workers.resumed)}: "
        "it resumes from that checkpoint"
    )
    resumed = restart(cfg, run_dir, workers.resumed)
    say(f"  done: {accuracy_line(resumed)}")
    resumed_from = "scratch" if position is None else f"its checkpoint at step {position[0]}"
    return resumed, (
        f"killed at step {last} ({plural(workers.killed)}), resumed from {resumed_from} "
        f"({plural(workers.resumed)})"
    )


def verdict(reference: Outcome, resumed: Outcome) -> bool:
    """Print whether the resumed run ended bitwise equal to the reference; return that."""
    problems = compare_weights(reference.weights, resumed.weights)
    tensors = len(reference.weights)
    say("\n[4/4] The final weights of the reference and of the resumed run, by torch.equal")
    if problems:
        say(f"{VERDICT_BAD}: {len(problems)} of {tensors} tensors are not bitwise equal")
        for line in problems:
            say(f"  {line}")
        return False
    if resumed.history != reference.history:
        say(f"{VERDICT_BAD}: equal weights, but not the same validation results on the way")
        return False
    say(f"{VERDICT_OK}: all {tensors} tensors of the resumed model are bitwise equal to the")
    say(
        "  uninterrupted run's, and so are the validation loss and accuracy of all "
        f"{len(reference.history)} epochs"
    )
    return True


def print_summary(cfg: Config, outcome: Outcome, n_train: int, resume: str) -> None:
    _, _, accuracy = outcome.history[-1]
    passes = outcome.steps * cfg.batch_size / n_train
    say("\nSummary")
    say(
        f"  training  {outcome.steps} steps in {cfg.epochs} virtual epochs of "
        f"{cfg.steps_per_epoch} = {passes:.2f} passes over {n_train} training images"
    )
    say(f"  accuracy  {accuracy:.1%} on the validation set")
    say(f"  resume    {resume}")


def choose_kill_step(args: argparse.Namespace, cfg: Config) -> tuple[int, str]:
    """Return the step at which to kill the run, and a note saying where it comes from."""
    if args.kill_at is not None:
        return args.kill_at, f"{args.kill_at} (from --kill-at)"
    kill_seed = args.kill_seed if args.kill_seed is not None else secrets.randbelow(10**6)
    kill_at = draw_kill_step(cfg, kill_seed)
    return kill_at, f"{kill_at}, drawn at random (again: --kill-seed {kill_seed})"


def run_demo(args: argparse.Namespace, cfg: Config) -> int:
    make_deterministic()
    train_ds, val_ds = load_data(cfg.seed)
    n_train, n_val = len(train_ds), len(val_ds)
    workers = Workers(args.reference_workers, args.workers, args.resume_workers)
    if args.no_kill:
        print_header(cfg, n_train, n_val, None, workers)
        say()
        reference = reference_run(cfg, train_ds, val_ds, workers.reference)
        print_summary(cfg, reference, n_train, "not tried (--no-kill)")
        return 0
    kill_at, kill_note = choose_kill_step(args, cfg)
    print_header(cfg, n_train, n_val, kill_note, workers)
    say(f"\n[1/4] The reference run, uninterrupted, with {plural(workers.reference)}")
    reference = reference_run(cfg, train_ds, val_ds, workers.reference)
    with run_directory(args.run_dir) as run_dir:
        resumed, events = kill_and_resume(cfg, run_dir, kill_at, workers)
    identical = verdict(reference, resumed)
    outcome = "bitwise identical" if identical else "NOT identical"
    print_summary(cfg, resumed, n_train, f"{events}: weights {outcome}")
    return 0 if identical else 1


# ------------------------------------------------------------------------------ command line


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1 (got {value})")
    return value


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an int >= 0 (got {value})")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train an MLP on the digits dataset with virtual epochs, kill the run with "
        "SIGKILL at a random step, resume it from its last checkpoint, and check that the final "
        "weights are bitwise identical to an uninterrupted run's.",
    )
    parser.add_argument("--epochs", type=positive, help="virtual epochs (default 20)")
    parser.add_argument("--steps-per-epoch", type=positive, help="batches per epoch (default 15)")
    parser.add_argument("--batch-size", type=positive, help="samples per batch (default 32)")
    parser.add_argument(
        "--checkpoint-every", type=positive, help="steps between mid-epoch checkpoints (default 4)"
    )
    parser.add_argument(
        "--seed", type=non_negative, default=0, help="data split, model, sample order"
    )
    kill = parser.add_mutually_exclusive_group()
    kill.add_argument("--kill-at", type=positive, help="the step at which to kill the run")
    kill.add_argument("--kill-seed", type=non_negative, help="draw the kill step from this seed")
    kill.add_argument("--no-kill", action="store_true", help="train once, no resume check")
    defaults = Workers()
    parser.add_argument(
        "--reference-workers",
        type=non_negative,
        default=defaults.reference,
        help=f"DataLoader workers of the uninterrupted run (default {defaults.reference})",
    )
    parser.add_argument(
        "--workers",
        type=non_negative,
        default=defaults.killed,
        help=f"DataLoader workers of the run that is killed (default {defaults.killed})",
    )
    parser.add_argument(
        "--resume-workers",
        type=non_negative,
        default=defaults.resumed,
        help=f"DataLoader workers of the resumed run (default {defaults.resumed})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny configuration, for the tests: 4 epochs of 5 steps, a checkpoint every 3",
    )
    parser.add_argument(
        "--run-dir", type=Path, help="keep the checkpoints here (default: a temporary directory)"
    )
    # Internal: how the demo starts its child processes.
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--report-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = (4, 5, 32, 3) if args.quick else (20, 15, 32, 4)
    names = ("epochs", "steps_per_epoch", "batch_size", "checkpoint_every")
    for name, default in zip(names, defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    total = args.epochs * args.steps_per_epoch
    if args.kill_at is not None and args.kill_at >= total:
        parser.error(f"--kill-at must be below the number of steps, {total} (got {args.kill_at})")
    if args.child and args.run_dir is None:
        parser.error("--child needs --run-dir")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = Config(
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
    )
    if args.child:
        return run_child(cfg, args.run_dir, args.report_fd, args.workers)
    return run_demo(args, cfg)


if __name__ == "__main__":
    sys.exit(main())
