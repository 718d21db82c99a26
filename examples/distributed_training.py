"""Distributed data-parallel training with virtual epochs, launched by ``torchrun``.

One node, two processes (gloo on CPU, NCCL when every rank has a GPU)::

    torchrun --standalone --nproc_per_node=2 examples/distributed_training.py

Several nodes: the same script, started on every node with the rendezvous of your cluster::

    torchrun --nnodes=2 --node_rank=$NODE_RANK --nproc_per_node=8 \\
        --rdzv-backend=c10d --rdzv-endpoint=$HEAD_NODE:29500 examples/distributed_training.py

Each rank reads its own shard through an ``InfiniteSampler`` (rank and world size come from the
process group), so every rank takes exactly ``--steps-per-epoch`` steps per epoch, whatever the
dataset size: the all-reduce of the gradients never waits for a rank that ran out of data. Rank
0 saves a checkpoint after every epoch; ``--resume`` continues from it on any number of ranks
(``python examples/distributed_training.py --resume ...`` runs on one), with the same global
sample stream: the sample position is global, only the number of ranks sharing it changes.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset

from virtual_epochs import InfiniteSampler, VirtualDataLoader


def make_dataset(n: int = 5000, features: int = 16) -> TensorDataset:
    """A fixed regression problem: y = x @ w + noise, the same on every rank."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, features, generator=generator)
    w = torch.randn(features, 1, generator=generator)
    y = x @ w + 0.1 * torch.randn(n, 1, generator=generator)
    return TensorDataset(x, y)


def setup() -> tuple[int, int, torch.device]:
    """Join the process group when started by torchrun; else run as the only rank."""
    if "RANK" not in os.environ:
        return 0, 1, torch.device("cpu")
    use_cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank()
    device = (
        torch.device("cuda", int(os.environ["LOCAL_RANK"])) if use_cuda else torch.device("cpu")
    )
    return rank, dist.get_world_size(), device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps-per-epoch", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32, help="per rank")
    parser.add_argument("--checkpoint", type=Path, default=Path("distributed-checkpoint.pt"))
    parser.add_argument("--resume", type=Path, help="a checkpoint to continue from")
    args = parser.parse_args()
    torch.manual_seed(0)
    rank, world_size, device = setup()

    dataset = make_dataset()
    sampler = InfiniteSampler(dataset, seed=1)  # rank and world size from the process group
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler)
    train = VirtualDataLoader(loader, steps_per_epoch=args.steps_per_epoch)
    net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1)).to(device)
    model = DistributedDataParallel(net) if world_size > 1 else net
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)

    if args.resume:
        checkpoint: dict[str, Any] = torch.load(args.resume, map_location=device, weights_only=True)
        net.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        train.load_state_dict(checkpoint["data"])  # the same state on every rank
        if rank == 0:
            position = checkpoint["data"]["resume"]["seek"]["position"]
            print(f"resumed at epoch {train.epoch}, step {train.steps}, global sample {position}")

    for epoch in range(train.epoch, args.epochs):
        total = torch.zeros((), device=device)
        for x, y in train:
            loss = nn.functional.mse_loss(model(x.to(device)), y.to(device))
            optimizer.zero_grad()
            loss.backward()  # DDP all-reduces the gradients: every rank must take this step
            optimizer.step()
            total += loss.detach()
        if world_size > 1:
            dist.all_reduce(total)
        if rank == 0:
            mean = total.item() / (len(train) * world_size)
            print(f"epoch {epoch + 1}/{args.epochs}: mean loss {mean:.4f} on {world_size} ranks")
            state = {
                "model": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "data": train.state_dict(),
            }
            torch.save(state, args.checkpoint)

    if rank == 0:
        position = train.state_dict()["resume"]["seek"]["position"]
        print(f"done: {train.steps} steps, global sample position {position}")
    if world_size > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
