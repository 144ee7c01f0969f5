"""Supervised contrastive loss L^sup_out (Khosla et al., 2020, Eq. 2), as HobbitLong/SupContrast losses.py.

Anchors are all views of the local samples; the contrast set is all views of the global batch except the
anchor itself, optionally followed by labelled keys from a queue (SupCon with a MoCo-style queue, as in the
released ImageNet model). Positives are the contrast entries with the anchor's label.

Distributed contract: each rank passes its local ``features, labels`` and the global ``all_features,
all_labels`` (gathered by the caller with :func:`sslcore.distributed.gather_with_grad` / ``gather``) plus the
``offset`` of its first sample; the loss is the mean over the local anchors, so the mean over ranks equals one
process with the global batch.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from sslcore.components.losses._checks import check_global, check_ndim


@attrs.frozen(kw_only=True)
class SupConConfig:
    """Options of the ``supcon`` loss.

    Attributes:
        temperature: tau in Eq. 2; 0.1 as the official CIFAR recipe (README: ``main_supcon.py --temp 0.1``).
        base_temperature: the loss is multiplied by ``temperature / base_temperature``. 0.07 is the official
            ``SupConLoss`` default, which main_supcon.py never overrides, so the official CIFAR runs scale
            Eq. 2 by 0.1/0.07; set it equal to ``temperature`` for Eq. 2 unscaled.
        normalize: L2-normalise the features (the official model normalises its projection; normalising
            unit vectors again changes nothing).
    """

    temperature: float = attrs.field(default=0.1, validator=attrs.validators.gt(0))
    base_temperature: float = attrs.field(default=0.07, validator=attrs.validators.gt(0))
    normalize: bool = True


class SupConLoss(nn.Module):
    """``-(T/T_base) * 1/|P(i)| sum_{p in P(i)} log softmax_{a != i}(z_i . z_a / T)_p``, mean over local anchors.

    An anchor without any positive (one view and a label unique in the contrast set) contributes 0 and still
    counts in the mean: the official code would return NaN (0/0) before its edge-case fix, which does exactly
    this. Counting it keeps the mean over ranks equal to the single-process loss.
    """

    def __init__(self, temperature: float = 0.1, base_temperature: float = 0.07, normalize: bool = True) -> None:
        super().__init__()
        if temperature <= 0 or base_temperature <= 0:
            raise ValueError(f"temperatures must be > 0, got {temperature} and {base_temperature}")
        self.temperature = temperature
        self.base_temperature = base_temperature
        self.normalize = normalize

    def forward(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        all_features: torch.Tensor | None = None,
        all_labels: torch.Tensor | None = None,
        offset: int = 0,
        queue_features: torch.Tensor | None = None,
        queue_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``features``: local ``(B, V, D)`` (V views); ``labels``: ``(B,)`` integers; ``all_features,
        all_labels``: the global batch ``(N*B, V, D)``, ``(N*B,)`` (default: the local one); ``offset``: index
        of ``features[0]`` in ``all_features``; ``queue_features, queue_labels``: extra keys ``(K, D)``, ``(K,)``."""
        check_ndim("features", features, 3, "(B, V, D)")
        batch, views, dim = features.shape
        if labels.shape != (batch,):
            raise ValueError(f"labels must have shape ({batch},), got {tuple(labels.shape)}")
        if (all_features is None) != (all_labels is None):
            raise ValueError("pass both all_features and all_labels (the gathered batch), or neither")
        if all_features is None or all_labels is None:
            all_features, all_labels = features, labels
        check_ndim("all_features", all_features, 3, "(N*B, V, D)")
        if all_features.shape[1:] != features.shape[1:]:
            raise ValueError(
                f"all_features must have shape (N*B, {views}, {dim}), got {tuple(all_features.shape)}"
            )
        total = all_features.shape[0]
        if all_labels.shape != (total,):
            raise ValueError(f"all_labels must have shape ({total},), got {tuple(all_labels.shape)}")
        check_global(batch, total, offset, "all_features")
        if (queue_features is None) != (queue_labels is None):
            raise ValueError("pass both queue_features and queue_labels, or neither")

        if self.normalize:
            features = F.normalize(features, dim=2)
            all_features = F.normalize(all_features, dim=2)
        # Sample-major order: row b * V + v is view v of sample b (anchors and contrast set alike).
        anchors = features.reshape(batch * views, dim)
        anchor_labels = labels.repeat_interleave(views)
        contrast = all_features.reshape(total * views, dim)
        contrast_labels = all_labels.repeat_interleave(views)
        if queue_features is not None and queue_labels is not None:
            check_ndim("queue_features", queue_features, 2, "(K, D)")
            if queue_features.shape[1] != dim or queue_labels.shape != (queue_features.shape[0],):
                raise ValueError(
                    f"queue_features must be (K, {dim}) and queue_labels (K,), got "
                    f"{tuple(queue_features.shape)} and {tuple(queue_labels.shape)}"
                )
            if self.normalize:
                queue_features = F.normalize(queue_features, dim=1)
            contrast = torch.cat([contrast, queue_features])
            contrast_labels = torch.cat([contrast_labels, queue_labels.to(contrast_labels.dtype)])

        logits = anchors @ contrast.t() / self.temperature
        samples = torch.arange(batch, device=features.device) + offset
        own = samples.repeat_interleave(views) * views + torch.arange(views, device=features.device).repeat(batch)
        self_mask = own[:, None] == torch.arange(contrast.shape[0], device=features.device)[None, :]
        logits = logits.masked_fill(self_mask, float("-inf"))
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        positives = (anchor_labels[:, None] == contrast_labels[None, :]) & ~self_mask
        count = positives.sum(dim=1).clamp(min=1)
        mean_log_prob_pos = log_prob.masked_fill(~positives, 0.0).sum(dim=1) / count
        return -(self.temperature / self.base_temperature) * mean_log_prob_pos.mean()

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, base_temperature={self.base_temperature}, normalize={self.normalize}"


def build_supcon(config: SupConConfig) -> SupConLoss:
    """Supervised contrastive loss over all views of the global batch, optionally with a labelled queue (SupCon)."""
    return SupConLoss(
        temperature=config.temperature, base_temperature=config.base_temperature, normalize=config.normalize
    )
