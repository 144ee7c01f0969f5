"""The options of the plugin's components; the components are built by the modules that register them by name in
:mod:`sslcore_plugin_cpc.plugin`, imported only when a run builds one (so `sslcore list` needs no torch)."""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class MaskedConvContextConfig:
    """CPC v2's PixelCNN-style context: residual (1x3, pad-top 2x1) conv blocks; row i sees rows <= i.

    Options of the ``masked_conv`` context (the ``[context]`` table).

    Fields:
        num_blocks: residual blocks (appendix pseudo-code: 5).
        hidden_dim: channels inside each block (appendix pseudo-code: 256).
    """

    num_blocks: int = attrs.field(default=5, validator=attrs.validators.gt(0))
    hidden_dim: int = attrs.field(default=256, validator=attrs.validators.gt(0))


_v = attrs.validators


_probability = [_v.ge(0.0), _v.le(1.0)]


def _check_offsets(instance: object, attribute: attrs.Attribute, value: tuple[int, ...]) -> None:
    if not value or min(value) < 1 or len(set(value)) != len(value):
        raise ValueError(f"offsets must be distinct rows below the context (>= 1), got {list(value)}")


@attrs.frozen(kw_only=True)
class CPCConfig:
    """CPC v2: a grid of per-patch augmented patches, causal context, predictions k rows ahead in 4 directions.

    The ``cpc`` method (tables it uses: ``[backbone]`` the patch encoder, ``[context]``, ``[key_store]`` =
    ``in_batch``, ``[loss]`` = ``infonce`` with ``normalize = false``, ``temperature = 1 / emb_scale``).

    Fields:
        grid, patch_size, stride: the patch grid; images must be ``patch_size + (grid - 1) * stride`` px
            (CPC v1 sec. 3.3: 7, 64, 32 on 256 px).
        target_dim: width of the targets and predictions (pseudo-code ``target_dim=64``).
        offsets: the rows below the context that are predicted (pseudo-code: ``steps_to_ignore=2,
            steps_to_predict=3``, i.e. k = 3).
        directions: 1 (top to bottom, CPC v1), 2 (and bottom to top) or 4 (all four, CPC v2).
        layer_norm: the patch encoder must normalise each patch on its own, not with batch statistics (CPC v2
            sec. 4.1: BatchNorm lets the context see the patches it predicts); give the backbone
            ``norm_layer = "groupnorm1"``. False allows CPC v1's BatchNorm.
        min_scale, flip, color_drop: per-patch augmentation: crop side fraction in [min_scale, 1], probability of a
            horizontal flip, probability of dropping two of the three colour channels.
    """

    grid: int = attrs.field(default=7, validator=_v.ge(2))
    patch_size: int = attrs.field(default=64, validator=_v.gt(0))
    stride: int = attrs.field(default=32, validator=_v.gt(0))
    target_dim: int = attrs.field(default=64, validator=_v.gt(0))
    offsets: tuple[int, ...] = attrs.field(default=(3,), validator=_check_offsets)
    directions: int = attrs.field(default=4, validator=_v.in_((1, 2, 4)))
    layer_norm: bool = True
    min_scale: float = attrs.field(default=0.8, validator=[_v.gt(0.0), _v.le(1.0)])
    flip: float = attrs.field(default=0.5, validator=_probability)
    color_drop: float = attrs.field(default=0.5, validator=_probability)

    def __attrs_post_init__(self) -> None:
        if max(self.offsets) >= self.grid:
            raise ValueError(f"offsets must be below the grid size {self.grid}, got {list(self.offsets)}")
