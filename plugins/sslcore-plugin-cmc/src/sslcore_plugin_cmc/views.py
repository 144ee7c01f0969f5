"""The ``cmc`` view transform: CMC's crops as RGB tensors (the colour conversion is part of the network).

The official ``train_CMC.py`` (``get_train_loader``) crops (``RandomResizedCrop(224, scale=(crop_low, 1))``, 0.08 for
ResNets on ImageNet, 0.2 otherwise) and flips, with no colour jitter and no grayscale: a grey image has empty ab
channels. PyContrast's CMC (``datasets/util.py`` ``build_transforms``, aug ``'C'``) adds ColorJitter(0.4, 0.4, 0.4,
0.1) on every crop. The built-in views all turn some crops grey, hence a view transform of its own.
"""

from __future__ import annotations

from sslcore.data.augment import MultiView, ViewSpec
from sslcore.data.batched import BatchedViews, make_views
from sslcore_plugin_cmc.config import CMCViewsConfig


def build_cmc_views(config: CMCViewsConfig) -> MultiView | BatchedViews:
    """CMC: crop, flip, optional jitter and blur, never grayscale; RGB out (the network converts to Lab)."""
    spec = ViewSpec(
        size=config.size,
        scale=config.scale,
        interpolation=config.interpolation,
        jitter=(config.jitter[0], config.jitter[1], config.jitter[2], config.jitter[3]),
        jitter_prob=config.jitter_prob,
        grayscale_prob=0.0,
        blur_prob=config.blur_prob,
        solarize_prob=0.0,
        mean=config.mean,
        std=config.std,
    )
    return make_views([spec] * config.num_views, config.pipeline)
