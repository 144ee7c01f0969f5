"""Noise-contrastive estimation against a memory bank: InstDisc (Wu et al., 2018, Eq. 3-6), following the
official zhirongw/lemniscate.pytorch ``lib/NCEAverage.py`` and ``lib/NCECriterion.py``.

The memory bank itself (sampling ``m`` entries per query, the momentum update of the entries) is the key
store's business; this loss only scores what it is given. For the non-parametric softmax of Eq. 2 with
sampled negatives approximating the partition function, use ``infonce`` with per-query negatives ``(B, m, D)``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sslcore.components.loss_configs import NCEConfig
from sslcore.components.losses._checks import check_ndim, check_same_shape
from sslcore.distributed import all_reduce_mean
from sslcore.keys import Keys

#: Added to the denominators of Eq. 5, as the official NCECriterion does.
_EPS = 1e-7


class NCELoss(nn.Module):
    """``-(1/B) sum_b [log h(pos_b) + sum_j log(1 - h(neg_bj))]`` with ``h = P / (P + m P_n)``, ``P_n = 1/n``.

    ``P(i|v) = exp(v_i . v / tau) / Z`` where the normalisation constant ``Z`` is estimated once, on the first
    batch, as ``mean(exp(v . f / tau)) * n`` over its positives and negatives, then kept fixed (Sec. 3.2; the
    official code). ``Z`` is the persistent buffer ``normalizer`` (0 until set), so it is saved in checkpoints;
    on several ranks the first estimate is averaged over ranks, as one process with the global batch would
    compute it. The gradient treats ``Z`` as a constant, as the official backward does.
    """

    normalizer: torch.Tensor

    def __init__(self, temperature: float = 0.07, normalize: bool = False) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.normalize = normalize
        self.register_buffer("normalizer", torch.zeros(()))
        self._normalizer_set = False  # mirrors ``normalizer > 0`` on the host, so no step reads the device for it

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args)
        self._normalizer_set = bool(self.normalizer > 0)  # read once, when a checkpoint is loaded

    def forward(self, query: torch.Tensor, keys: Keys) -> torch.Tensor:
        """``query``: the features ``(B, D)``; ``keys``: a memory bank's answer: each sample's stored entry as
        ``positive`` ``(B, D)``, ``m`` entries drawn uniformly as ``bank`` (``(B, m, D)`` per sample or ``(m, D)``
        shared) and ``population``, the bank size ``n``."""
        keys.require("nce", "positive", "bank", "population")
        features, positive, negatives, num_samples = query, keys.positive, keys.bank, keys.population
        assert positive is not None and negatives is not None and num_samples is not None
        check_ndim("features", features, 2, "(B, D)")
        check_same_shape("features", features, "positive", positive)
        batch, dim = features.shape
        if negatives.ndim == 2 and negatives.shape[1] == dim:
            shared = True
        elif negatives.ndim == 3 and negatives.shape[0] == batch and negatives.shape[2] == dim:
            shared = False
        else:
            raise ValueError(
                f"negatives must have shape (m, D) or (B, m, D) with B={batch}, D={dim}, got {tuple(negatives.shape)}"
            )
        if self.normalize:
            features, positive, negatives = (F.normalize(t, dim=-1) for t in (features, positive, negatives))

        l_pos = (features * positive).sum(dim=1, keepdim=True)
        l_neg = features @ negatives.t() if shared else torch.einsum("bd,bmd->bm", features, negatives)
        scores = torch.exp(torch.cat([l_pos, l_neg], dim=1) / self.temperature)  # Z * P(i|v), Eq. 2
        if not self._normalizer_set:
            with torch.no_grad():
                self.normalizer.copy_(all_reduce_mean(scores.mean() * num_samples))
            self._normalizer_set = True
        probs = scores / self.normalizer
        noise = l_neg.shape[1] / num_samples  # m * P_n(i)
        log_h_data = torch.log(probs[:, 0] / (probs[:, 0] + noise + _EPS))  # Eq. 5, positive from P_d
        log_h_noise = torch.log(noise / (probs[:, 1:] + noise + _EPS))  # log(1 - h), negatives from P_n
        return -(log_h_data.sum() + log_h_noise.sum()) / batch  # Eq. 6

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, normalize={self.normalize}"


def build_nce(config: NCEConfig) -> NCELoss:
    """Noise-contrastive estimation against memory-bank entries with a fixed estimate of Z (InstDisc)."""
    return NCELoss(temperature=config.temperature, normalize=config.normalize)
