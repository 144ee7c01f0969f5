"""Shuffling BatchNorm (MoCo, He et al. 2020, sec. 3.3) and BatchNorm over groups of a fixed size.

MoCo normalises with BatchNorm per GPU (8 GPUs x 32 samples for a batch of 256). Within one GPU's batch, the
query and its positive key would be normalised with statistics of the same samples, which "leaks information"
and lets the model cheat the pretext task. So the key encoder sees the GLOBAL batch shuffled before it is
split over GPUs, and its outputs are unshuffled afterwards (official ``moco/builder.py``:
``_batch_shuffle_ddp`` / ``_batch_unshuffle_ddp``): a key is normalised with a different subset of samples
than its query.

``group_size`` makes "per GPU" a property of the recipe instead of the hardware: the local batch is split into
groups of ``group_size`` samples and each group runs through the network on its own, as it would on its own
GPU, so every BatchNorm layer (of any backbone) normalises with that group's statistics. One process with
``group_size = B`` computes exactly what N processes with batch B each compute, shuffle included (the global
permutation is the same). This is the single-GPU emulation of the official CIFAR-10 demo
(``colab/moco_cifar10_demo.ipynb``, ``SplitBatchNorm`` with ``--bn-splits 8`` plus a single-GPU shuffle), done
by running the groups separately instead of replacing the BatchNorm layers. One difference: each group updates
the running statistics in turn (the demo averages the groups' statistics); only evaluation in eval mode reads
them.
"""

from __future__ import annotations

import torch
from torch import nn

from sslcore import distributed
from sslcore.errors import SslcoreError


def check_group_size(batch: int, group_size: int | None) -> None:
    """Raise unless ``group_size`` (None: the whole batch) divides the local ``batch``."""
    if group_size is not None and (group_size <= 0 or batch % group_size):
        raise SslcoreError(
            f"bn_group_size = {group_size} does not divide the batch of {batch} samples on this process",
            hint="choose a bn_group_size that divides run.batch_size / number of processes",
        )


def grouped_forward(network: nn.Module, x: torch.Tensor, group_size: int | None) -> torch.Tensor:
    """``network`` applied to consecutive groups of ``group_size`` samples separately (None: the whole batch)."""
    check_group_size(x.shape[0], group_size)
    if group_size is None or group_size == x.shape[0]:
        return network(x)
    return torch.cat([network(group) for group in x.split(group_size)])


@torch.no_grad()
def shuffled_forward(network: nn.Module, x: torch.Tensor, group_size: int | None) -> torch.Tensor:
    """``network(x)`` row by row, with BatchNorm groups drawn from a random permutation of the global batch.

    The official ``_batch_shuffle_ddp``: gather the inputs of every rank, permute them with a permutation drawn
    from torch's global generator and broadcast from rank 0, let each rank encode its slice (in groups of
    ``group_size``), gather the outputs and return this rank's rows in their original order. When the global
    batch is a single BatchNorm group (one process, ``group_size`` unset) a permutation cannot change anything,
    so the network runs on ``x`` directly. Every rank must call it with the same batch size. No gradient.
    """
    batch = x.shape[0]
    check_group_size(batch, group_size)
    world = distributed.world_size()
    groups = world * (batch // group_size if group_size is not None else 1)
    if groups == 1:
        return network(x)
    x_all = distributed.gather(x)
    permutation = distributed.broadcast(torch.randperm(x_all.shape[0]).to(x.device), src=0)
    mine = slice(distributed.rank() * batch, (distributed.rank() + 1) * batch)
    out_all = distributed.gather(grouped_forward(network, x_all[permutation[mine]], group_size))
    return out_all[torch.argsort(permutation)[mine]]
