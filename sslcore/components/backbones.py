"""Backbones: any timm model by name, plus the surgery SSL papers apply to it (CIFAR stem, MoCo v3's ViT).

The factory returns the timm model itself (``num_classes=0``: its forward gives pooled features), so its state
dict loads back with ``timm.create_model(name, num_classes=0)``.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

import torch
from torch import nn

from sslcore.components.backbone_configs import TimmBackboneConfig
from sslcore.components.dual_bn import add_auxiliary_batchnorm
from sslcore.errors import SslcoreError


def timm_kwargs(config: TimmBackboneConfig) -> dict[str, Any]:
    """The options ``config`` passes to ``timm.create_model`` besides ``pretrained``."""
    kwargs: dict[str, Any] = {"num_classes": 0}
    for key in ("in_chans", "img_size", "num_heads", "global_pool", "weight_init", "zero_init_last", "norm_layer"):
        if getattr(config, key) is not None:
            kwargs[key] = getattr(config, key)
    if config.dynamic_img_size:
        kwargs["dynamic_img_size"] = True
    if config.drop_path_rate > 0:
        kwargs["drop_path_rate"] = config.drop_path_rate
    return kwargs


def build_timm_backbone(config: TimmBackboneConfig) -> nn.Module:
    """A timm model by name, returning pooled features; optional CIFAR stem and MoCo v3 ViT surgery."""
    import timm  # imported here: `sslcore list` and `sslcore check` need no timm

    if not timm.is_model(config.name):
        raise SslcoreError(f"unknown timm model '{config.name}'", hint=_close_timm_names(config.name))
    kwargs = timm_kwargs(config)
    try:
        model = timm.create_model(config.name, pretrained=config.pretrained, **kwargs)
    except (TypeError, ValueError, KeyError, AssertionError, RuntimeError) as error:
        raise SslcoreError(
            f"timm could not build '{config.name}' with {kwargs}: {error}",
            hint="drop or change the options this model does not accept (see its timm definition)",
        ) from None
    if config.cifar_stem:
        apply_cifar_stem(model)
    if config.frozen_patch_embed:
        freeze_patch_embed(model, reinitialize=not config.pretrained)
    if config.sincos_pos_embed:
        set_sincos_pos_embed(model)
    if config.dual_bn:
        add_auxiliary_batchnorm(model, config.dual_bn_momentum)
    # The pooled width is timm's head_hidden_size where a model keeps a pre-logits layer (e.g. MobileNetV3).
    model.num_features = int(getattr(model, "head_hidden_size", None) or model.num_features)
    return model


def _close_timm_names(name: str) -> str:
    import timm

    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    listing = "timm.list_models('pattern*') lists the names"
    return f"did you mean {', '.join(repr(c) for c in close)}? ({listing})" if close else listing


def apply_cifar_stem(model: nn.Module) -> None:
    """Make a ResNet-style stem keep 32x32 resolution: first conv 3x3 stride 1 padding 1, no max-pool.

    As the official SimCLR ``resnet.py`` (``cifar_stem=True``) and solo-learn. The stem is found by structure
    (timm's ``pretrained_cfg['first_conv']`` and a ``maxpool`` module), never by the model's name.
    """
    first_conv = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    conv = _submodule(model, first_conv) if isinstance(first_conv, str) else None
    maxpool = getattr(model, "maxpool", None)
    if not isinstance(conv, nn.Conv2d) or not isinstance(maxpool, nn.Module) or isinstance(maxpool, nn.Identity):
        raise SslcoreError(
            f"cifar_stem needs a ResNet-style stem (a first convolution followed by a `maxpool` module); "
            f"{type(model).__name__} (first_conv={first_conv!r}) has none",
            hint="set cifar_stem = false for this model",
        )
    stem = nn.Conv2d(
        conv.in_channels, conv.out_channels, kernel_size=3, stride=1, padding=1, bias=conv.bias is not None
    )
    # The init timm and torchvision use for ResNet convolutions.
    nn.init.kaiming_normal_(stem.weight, mode="fan_out", nonlinearity="relu")
    if stem.bias is not None:
        nn.init.zeros_(stem.bias)
    model.set_submodule(first_conv, stem)
    model.maxpool = nn.Identity()


def _submodule(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def _patch_projection(model: nn.Module, option: str) -> nn.Conv2d:
    proj = _submodule(model, "patch_embed.proj")
    if not isinstance(proj, nn.Conv2d):
        raise SslcoreError(
            f"{option} needs a ViT patch embedding (`patch_embed.proj` convolution); {type(model).__name__} has none",
            hint=f"set {option} = false for this model",
        )
    return proj


def freeze_patch_embed(model: nn.Module, *, reinitialize: bool) -> None:
    """MoCo v3 sec. 4.2: a random, fixed patch projection (official ``vits.py``, ``stop_grad_conv1``).

    With ``reinitialize`` the projection first gets MoCo v3's Xavier-uniform init (fan-in ``C*p*p``, fan-out the
    embedding width) and a zero bias, since the scale of a projection that never trains is part of the method.
    """
    proj = _patch_projection(model, "frozen_patch_embed")
    if reinitialize:
        fan_in = proj.in_channels * proj.kernel_size[0] * proj.kernel_size[1]
        bound = math.sqrt(6.0 / (fan_in + proj.out_channels))
        nn.init.uniform_(proj.weight, -bound, bound)
        if proj.bias is not None:
            nn.init.zeros_(proj.bias)
    proj.requires_grad_(False)


def sincos_2d(grid_h: int, grid_w: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """The (grid_h * grid_w, dim) 2-D sin-cos table of MoCo v3 (official ``vits.py``), patches in row-major order.

    A patch at (row, col) gets ``[sin(row*w), cos(row*w), sin(col*w), cos(col*w)]`` with
    ``w_d = temperature ** (-d / (dim/4))``. The official code names the slow (row) index ``w``; on the square grids
    it is used with the two agree exactly, and this one stays correct on non-square grids.
    """
    if dim % 4 != 0:
        raise SslcoreError(f"sincos_pos_embed needs an embedding width divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(grid_h, dtype=torch.float32), torch.arange(grid_w, dtype=torch.float32), indexing="ij"
    )
    out_rows = rows.flatten()[:, None] * omega[None, :]
    out_cols = cols.flatten()[:, None] * omega[None, :]
    return torch.cat([out_rows.sin(), out_rows.cos(), out_cols.sin(), out_cols.cos()], dim=1)


def set_sincos_pos_embed(model: nn.Module) -> None:
    """Replace a ViT's learned position embedding by MoCo v3's fixed 2-D sin-cos one.

    Prefix tokens (the class token) get a zero embedding, as in the official ``vits.py``; the table stays a
    ``pos_embed`` parameter with ``requires_grad=False`` (as official), so timm loads the exported weights.
    """
    pos_embed = getattr(model, "pos_embed", None)
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if not isinstance(pos_embed, nn.Parameter) or grid is None:
        raise SslcoreError(
            f"sincos_pos_embed needs a ViT with a `pos_embed` parameter and `patch_embed.grid_size`; "
            f"{type(model).__name__} has none",
            hint="set sincos_pos_embed = false for this model",
        )
    grid_h, grid_w = grid
    table = sincos_2d(grid_h, grid_w, pos_embed.shape[-1])
    num_prefix = pos_embed.shape[1] - table.shape[0]
    if num_prefix < 0:
        raise SslcoreError(
            f"sincos_pos_embed: `pos_embed` has {pos_embed.shape[1]} positions for a {grid_h}x{grid_w} patch grid"
        )
    table = torch.cat([torch.zeros(num_prefix, table.shape[1]), table])
    model.pos_embed = nn.Parameter(table[None].to(pos_embed.dtype), requires_grad=False)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Turn every BatchNorm into SyncBatchNorm, for training on several processes (torch's own conversion)."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)


