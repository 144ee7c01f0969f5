"""The built-in heads' options (``mlp``, ``prototypes``, ``dino``) and their registration; the modules are built
by :mod:`sslcore.components.heads`, imported only when a run builds one (so `sslcore list` needs no torch)."""

from __future__ import annotations

import attrs

from sslcore import hookimpl

_positive = attrs.validators.gt(0)


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


@attrs.frozen(kw_only=True)
class PrototypesConfig:
    """SwAV prototypes: a Linear layer without bias whose rows (prototypes) are kept L2-normalized.

    Fields:
        num_prototypes: number of prototypes K (SwAV ImageNet: 3000).
    """

    num_prototypes: int = attrs.field(default=3000, validator=_positive)


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


@hookimpl
def sslcore_register_heads(registry):
    registry.add("mlp", "sslcore.components.heads:build_mlp_head", MLPHeadConfig)
    registry.add("prototypes", "sslcore.components.heads:build_prototypes", PrototypesConfig)
    registry.add("dino", "sslcore.components.heads:build_dino_head", DINOHeadConfig)
