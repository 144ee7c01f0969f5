"""Heads: projector / predictor MLPs, SwAV prototypes and the DINO head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

from sslcore.components.head_configs import DINOHeadConfig, MLPHeadConfig, PrototypesConfig


def _check_in_dim(in_dim: int) -> None:
    if not isinstance(in_dim, int) or isinstance(in_dim, bool) or in_dim <= 0:
        raise ValueError(f"a head needs a positive integer input width, got in_dim={in_dim!r}")


class MLPHead(nn.Module):
    """Linear layers as blocks in :attr:`layers`; ``nn.Sequential(*head.layers[:k])`` is the head cut after
    block ``k`` (SimCLR v2 fine-tunes from the first projection layer: ``ft_proj_selector``)."""

    def __init__(self, config: MLPHeadConfig, in_dim: int) -> None:
        super().__init__()
        _check_in_dim(in_dim)
        self.out_dim = config.out_dim
        blocks = []
        for index in range(config.num_layers):
            last = index == config.num_layers - 1
            width_in = in_dim if index == 0 else config.hidden_dim
            width_out = config.out_dim if last else config.hidden_dim
            with_bn = config.last_batch_norm if last else config.batch_norm
            block: list[nn.Module] = [nn.Linear(width_in, width_out, bias=config.bias and not with_bn)]
            if with_bn and last:
                block.append(_output_batch_norm(width_out, config))
            elif with_bn:
                block.append(nn.BatchNorm1d(width_out))
            if not last:
                block.append(nn.ReLU())
            blocks.append(nn.Sequential(*block))
        self.layers = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.layers:
            x = block(x)
        return x


def _output_batch_norm(width: int, config: MLPHeadConfig) -> nn.BatchNorm1d:
    norm = nn.BatchNorm1d(width, affine=config.last_batch_norm_affine)
    if config.last_batch_norm_affine and not config.last_batch_norm_center:
        norm.bias.requires_grad_(False)  # stays at its zero init: a scale without a shift
    return norm


def build_mlp_head(config: MLPHeadConfig, in_dim: int) -> MLPHead:
    """MLP projector / predictor (MoCo, SimCLR, BYOL, SimSiam, MoCo v3)."""
    return MLPHead(config, in_dim)


class Prototypes(nn.Linear):
    """Scores of (already L2-normalized) embeddings against the prototypes (SwAV ``resnet50.py``).

    The method calls :meth:`normalize_` before each training step, as SwAV ``main_swav.py`` does before the
    forward pass; ``weight`` is the (num_prototypes, dim) prototype matrix (also used to score the queue).
    """

    def __init__(self, in_dim: int, num_prototypes: int) -> None:
        _check_in_dim(in_dim)
        super().__init__(in_dim, num_prototypes, bias=False)
        self.out_dim = num_prototypes

    @torch.no_grad()
    def normalize_(self) -> None:
        """L2-normalize each prototype in place."""
        self.weight.copy_(F.normalize(self.weight, dim=1, p=2))


def build_prototypes(config: PrototypesConfig, in_dim: int) -> Prototypes:
    """SwAV prototypes (bias-free Linear with L2-normalized rows)."""
    return Prototypes(in_dim, config.num_prototypes)


class DINOHead(nn.Module):
    """``mlp`` -> L2 normalize -> ``last_layer``; the method freezes ``last_layer`` in the first epoch."""

    def __init__(self, config: DINOHeadConfig, in_dim: int) -> None:
        super().__init__()
        _check_in_dim(in_dim)
        self.out_dim = config.out_dim
        if config.num_layers == 1:
            self.mlp: nn.Module = nn.Linear(in_dim, config.bottleneck_dim)
        else:
            layers: list[nn.Module] = []
            width = in_dim
            for _ in range(config.num_layers - 1):
                layers.append(nn.Linear(width, config.hidden_dim))
                if config.use_bn:
                    layers.append(nn.BatchNorm1d(config.hidden_dim))
                layers.append(nn.GELU())
                width = config.hidden_dim
            layers.append(nn.Linear(width, config.bottleneck_dim))
            self.mlp = nn.Sequential(*layers)
        self.mlp.apply(_dino_init)
        # Built after the init, so it keeps PyTorch's default Linear init, as in the official code.
        self.last_layer = parametrizations.weight_norm(nn.Linear(config.bottleneck_dim, config.out_dim, bias=False))
        magnitude = self.last_layer.parametrizations.weight.original0  # g, shape (out_dim, 1)
        with torch.no_grad():
            magnitude.fill_(1.0)
        magnitude.requires_grad_(not config.norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1, p=2)
        return self.last_layer(x)


def _dino_init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02, a=-2.0, b=2.0)  # DINO utils.trunc_normal_ defaults
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_dino_head(config: DINOHeadConfig, in_dim: int) -> DINOHead:
    """DINO head: MLP, L2-normalized bottleneck, weight-normalized output layer."""
    return DINOHead(config, in_dim)


