"""Sinkhorn-Knopp equipartition of samples over prototypes (SwAV, Caron et al., 2020, Sec. 3.1 and Alg. 1),
exactly as the official facebookresearch/swav main_swav.py ``distributed_sinkhorn``."""

from __future__ import annotations

import torch

from sslcore.distributed import all_reduce_sum, world_size


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Soft codes ``(B, K)`` whose rows sum to 1, from prototype scores ``(B, K)`` of this rank's samples.

    ``Q = exp(scores / epsilon)^T`` (K x B) is scaled to the transportation polytope of the GLOBAL batch:
    each iteration gives every prototype a total mass of 1/K (row sums all-reduced over ranks) and every
    sample a mass of 1/B_global (the official code divides the local column sums by ``B_local * world_size``),
    then ``Q * B_global`` makes each sample's codes a distribution. Computed in float32, without gradient.
    ``epsilon`` is 0.05 and ``iterations`` 3 in SwAV's recipes. All ranks must pass the same number of rows.
    With a queue, ``scores`` holds the queue's rows followed by the batch's; keep the last rows.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must have shape (B, K), got {tuple(scores.shape)}")
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    q = torch.exp(scores.float() / epsilon).t()  # K x B, the paper's notation
    samples = q.shape[1] * world_size()
    prototypes = q.shape[0]
    q /= all_reduce_sum(q.sum())
    for _ in range(iterations):
        q /= all_reduce_sum(q.sum(dim=1, keepdim=True))  # each prototype: total mass 1/K
        q /= prototypes
        q /= q.sum(dim=0, keepdim=True)  # each sample: mass 1/B_global
        q /= samples
    q *= samples  # columns sum to 1: an assignment per sample
    return q.t()
