"""Heads: projector / predictor MLPs, SwAV prototypes and the DINO head."""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

from sslcore import hookimpl

_positive = attrs.validators.gt(0)


def _check_in_dim(in_dim: int) -> None:
    if not isinstance(in_dim, int) or isinstance(in_dim, bool) or in_dim <= 0:
        raise ValueError(f"a head needs a positive integer input width, got in_dim={in_dim!r}")


@attrs.frozen(kw_only=True)
class MLPHeadConfig:
    """A projector or predictor: ``num_layers`` Linear layers, ReLU between them.

    Each hidden layer is Linear [-> BatchNorm] -> ReLU; the output layer is Linear [-> BatchNorm]. A Linear
    followed by BatchNorm has no bias, since BN's mean subtraction cancels it (official MoCo v3 ``_build_mlp``,
    SimSiam ``builder.py``, SimCLR ``LinearLayer(use_bias=use_bias and not use_bn)``). Examples (official code):

    - MoCo v1: ``num_layers=1, out_dim=128``; MoCo v2: ``num_layers=2, hidden_dim=2048, out_dim=128``.
    - SimCLR v1 / v2: ``num_layers=2`` / ``3``, ``hidden_dim`` = backbone width, ``out_dim=128``,
      ``batch_norm=true, last_batch_norm=true, last_batch_norm_affine=true, last_batch_norm_center=false``.
    - BYOL projector and predictor: ``num_layers=2, hidden_dim=4096, out_dim=256, batch_norm=true, bias=false``.
    - SimSiam projector: ``num_layers=3, hidden_dim=2048, out_dim=2048, batch_norm=true, last_batch_norm=true``;
      predictor: ``num_layers=2, hidden_dim=512, out_dim=2048, batch_norm=true``.
    - MoCo v3 projector: ``num_layers=3`` (ViT) or ``2`` (ResNet), ``hidden_dim=4096, out_dim=256,
      batch_norm=true, last_batch_norm=true``; predictor: the same with ``num_layers=2``.

    Fields:
        num_layers: number of Linear layers (1 is a linear projection).
        out_dim: output width.
        hidden_dim: width of the hidden layers; required when ``num_layers > 1``.
        batch_norm: BatchNorm after each hidden Linear.
        last_batch_norm: BatchNorm after the output Linear (MoCo v3, SimSiam projector, SimCLR).
        last_batch_norm_affine: give that BatchNorm a learnable scale (MoCo v3 and SimSiam use none).
        last_batch_norm_center: give it a learnable shift too; SimCLR's output BN scales without a shift
            (TF ``center=False``), here a shift frozen at zero.
        bias: bias on the Linear layers not followed by BatchNorm (MoCo v1/v2 and SimSiam's predictor have one,
            BYOL's output layer has none).
    """

    num_layers: int = attrs.field(validator=attrs.validators.ge(1))
    out_dim: int = attrs.field(validator=_positive)
    hidden_dim: int | None = attrs.field(default=None, validator=attrs.validators.optional(_positive))
    batch_norm: bool = False
    last_batch_norm: bool = False
    last_batch_norm_affine: bool = False
    last_batch_norm_center: bool = True
    bias: bool = True

    def __attrs_post_init__(self) -> None:
        if self.num_layers > 1 and self.hidden_dim is None:
            raise ValueError(f"hidden_dim is required with num_layers={self.num_layers}")
        if self.num_layers == 1 and self.hidden_dim is not None:
            raise ValueError("hidden_dim is set but num_layers=1 has no hidden layer")
        if self.num_layers == 1 and self.batch_norm:
            raise ValueError("batch_norm applies to hidden layers and num_layers=1 has none; use last_batch_norm")
        if self.last_batch_norm_affine and not self.last_batch_norm:
            raise ValueError("last_batch_norm_affine needs last_batch_norm = true")
        if not self.last_batch_norm_center and not self.last_batch_norm_affine:
            raise ValueError("last_batch_norm_center = false needs last_batch_norm_affine = true")


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


@attrs.frozen(kw_only=True)
class PrototypesConfig:
    """SwAV prototypes: a Linear layer without bias whose rows (prototypes) are kept L2-normalized.

    Fields:
        num_prototypes: number of prototypes K (SwAV ImageNet: 3000).
    """

    num_prototypes: int = attrs.field(default=3000, validator=_positive)


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


@attrs.frozen(kw_only=True)
class DINOHeadConfig:
    """The DINO head (official ``vision_transformer.py`` ``DINOHead``).

    An MLP (Linear [-> BN] -> GELU hidden layers, then a Linear to the bottleneck), L2 normalization, and a
    weight-normalized Linear without bias to ``out_dim`` whose norms ``g`` start at 1.

    Fields:
        out_dim: output width K (DINO ViT-S/16: 65536).
        num_layers: Linear layers of the MLP, the bottleneck one included.
        hidden_dim: width of the hidden layers.
        bottleneck_dim: width of the L2-normalized bottleneck.
        use_bn: BatchNorm after each hidden Linear (DINO `main_dino.py --use_bn_in_head`, off by default).
        norm_last_layer: freeze the weight-norm ``g`` at 1, so the last layer's rows stay unit-norm
            (more stable; DINO turns it off for ViT-S/16 for better performance).
    """

    out_dim: int = attrs.field(default=65536, validator=_positive)
    num_layers: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    hidden_dim: int = attrs.field(default=2048, validator=_positive)
    bottleneck_dim: int = attrs.field(default=256, validator=_positive)
    use_bn: bool = False
    norm_last_layer: bool = True


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


@hookimpl
def sslcore_register_heads(registry):
    registry.add("mlp", build_mlp_head, MLPHeadConfig)
    registry.add("prototypes", build_prototypes, PrototypesConfig)
    registry.add("dino", build_dino_head, DINOHeadConfig)
