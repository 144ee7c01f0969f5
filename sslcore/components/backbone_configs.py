"""The built-in backbone's options (``timm``) and its registration; the network is built by
:mod:`sslcore.components.backbones`, imported only when a run builds one (so `sslcore list` needs no torch)."""

from __future__ import annotations

import attrs

from sslcore import hookimpl

_optional_positive = attrs.validators.optional(attrs.validators.gt(0))


@attrs.frozen(kw_only=True)
class TimmBackboneConfig:
    """A timm model used as a feature extractor (``num_classes=0``).

    Fields:
        name: any timm model name, optionally with a pretrained tag (``resnet50``, ``vit_small_patch16_224``,
            ``resnet50.a1_in1k``); see ``timm.list_models()``.
        pretrained: load timm's pretrained weights (downloads them from the hub once); off by default.
        cifar_stem: for 32x32 images, replace the first convolution of a ResNet-style stem by a 3x3 stride-1
            convolution and remove the max-pool (SimCLR sec. B.9 / official ``resnet.py`` ``cifar_stem``).
        in_chans: input channels, for inputs that are not RGB (a luminance channel, two chrominance channels);
            timm's default (3) if unset.
        img_size: input resolution for models with a fixed-size position embedding (ViTs); timm's default if unset.
        drop_path_rate: stochastic depth rate (linearly increasing over blocks, as in timm and DINO).
        frozen_patch_embed: MoCo v3 (sec. 4.2): a random patch projection with stop-gradient.
        sincos_pos_embed: MoCo v3: a fixed 2-D sin-cos position embedding instead of a learned one.
        num_heads: attention heads of a ViT, when they differ from timm's (MoCo v3's ViT-S uses 12, timm's 6).
        global_pool: timm pooling of the final features (``avg``, ``token``, ...); timm's default if unset.
        weight_init: timm ViT initialisation scheme (``moco`` follows MoCo v3's ``vits.py``); timm's default if unset.
        dynamic_img_size: a ViT accepts any input size, its position embedding resampled (multi-crop: DINO's
            96 px local crops through a 224 px ViT).
        zero_init_last: ResNet-style models: zero-initialise the last BatchNorm scale of every residual block.
            timm's default (unset) is true, as torchvision's ``zero_init_residual=True`` (SimSiam, MoCo v3, SimCLR);
            false is torchvision's default, which MoCo v1/v2, InstDisc, SwAV and DINO's ResNet-50 trained with.
        norm_layer: timm's name of the normalisation layer, for models that take one (ResNets); ``groupnorm1`` is
            layer normalisation over each sample's C x H x W (Hénaff et al. 2020 sec. 4.1); timm's default if
            unset. A timm option, so exports record it and timm alone rebuilds the network.
        dual_bn: give every BatchNorm an auxiliary twin, which forwards inside
            ``sslcore.components.dual_bn.auxiliary_batchnorm`` use (adversarial views, Xie et al. 2020 sec. 3.3);
            evaluation and exports use the main BatchNorms only, so the export stays a plain timm model.
        dual_bn_momentum: the twins' running-statistics momentum (PyTorch convention); the main ones' if unset.
    """

    name: str
    pretrained: bool = False
    cifar_stem: bool = False
    in_chans: int | None = attrs.field(default=None, validator=_optional_positive)
    img_size: int | None = attrs.field(default=None, validator=_optional_positive)
    drop_path_rate: float = attrs.field(default=0.0, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)])
    frozen_patch_embed: bool = False
    sincos_pos_embed: bool = False
    num_heads: int | None = attrs.field(default=None, validator=_optional_positive)
    global_pool: str | None = None
    weight_init: str | None = None
    dynamic_img_size: bool = False
    zero_init_last: bool | None = None
    norm_layer: str | None = None
    dual_bn: bool = False
    dual_bn_momentum: float | None = attrs.field(
        default=None, validator=attrs.validators.optional([attrs.validators.gt(0), attrs.validators.le(1)])
    )

    @property
    def surgery(self) -> list[str]:
        """Options that change the state dict's shapes, so that timm alone cannot rebuild the network."""
        return ["cifar_stem"] if self.cifar_stem else []


@hookimpl
def sslcore_register_backbones(registry):
    registry.add("timm", "sslcore.components.backbones:build_timm_backbone", TimmBackboneConfig)
