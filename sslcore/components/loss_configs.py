"""The built-in losses' options and their registration; the losses are built by the modules of
:mod:`sslcore.components.losses`, imported only when a run builds one (so `sslcore list` needs no torch)."""

from __future__ import annotations

import attrs

from sslcore import hookimpl


@attrs.frozen(kw_only=True)
class InfoNCEConfig:
    """InfoNCE of a query against its positive key and a set of negatives (MoCo v1/v2, InstDisc Eq. 2).

    Options of the ``infonce`` loss.

    Attributes:
        temperature: softmax temperature tau; 0.07 in MoCo v1 (official ``--moco-t`` default), 0.2 in MoCo v2.
        normalize: L2-normalise query, positive and negatives before the dot products. MoCo normalises in the
            model; normalising unit vectors again changes neither value nor gradient.
    """

    temperature: float = attrs.field(default=0.07, validator=attrs.validators.gt(0))
    normalize: bool = True


@attrs.frozen(kw_only=True)
class NTXentConfig:
    """NT-Xent over the views of the global batch, each view's positive its other view (SimCLR).

    Options of the ``ntxent`` loss.

    Attributes:
        temperature: tau in Eq. 1; 0.1 is the default of the official code (google-research/simclr, run.py
            ``--temperature``) used for the ImageNet results; the CIFAR-10 experiments use 0.5.
        normalize: use cosine similarity (the paper's sim(u, v)); false uses raw dot products
            (the official ``--hidden_norm`` flag).
    """

    temperature: float = attrs.field(default=0.1, validator=attrs.validators.gt(0))
    normalize: bool = True


@attrs.frozen(kw_only=True)
class MoCoV3ContrastiveConfig:
    """MoCo v3 ctr(q, k): InfoNCE against the keys of the global batch, scaled by 2*tau.

    Options of the ``mocov3_contrastive`` loss.

    Attributes:
        temperature: tau; 1.0 is the official default (ResNet-50 recipe, main_moco.py ``--moco-t``),
            ViT recipes use 0.2.
    """

    temperature: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))


@attrs.frozen(kw_only=True)
class NegativeCosineConfig:
    """Negative cosine similarity between prediction and (stop-gradient) target (SimSiam).

    The ``negative_cosine`` loss has no options."""


@attrs.frozen(kw_only=True)
class NormalizedMSEConfig:
    """Mean squared error between L2-normalised prediction and target, 2 - 2 cos (BYOL).

    The ``normalized_mse`` loss has no options."""


@attrs.frozen(kw_only=True)
class SupConConfig:
    """Supervised contrastive loss over all views of the global batch, optionally with a labelled queue (SupCon).

    Options of the ``supcon`` loss.

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


@attrs.frozen(kw_only=True)
class NCEConfig:
    """Noise-contrastive estimation against memory-bank entries with a fixed estimate of Z (InstDisc).

    Options of the ``nce`` loss.

    Attributes:
        temperature: tau of P(i|v) = exp(v_i . v / tau) / Z (Eq. 2); 0.07 in the paper and official code.
        normalize: L2-normalise features, positives and negatives first. Off by default, as the official
            ``NCEAverage``: memory entries start uniform in [-stdv, stdv] (not unit vectors) and are used as stored.
    """

    temperature: float = attrs.field(default=0.07, validator=attrs.validators.gt(0))
    normalize: bool = False


@attrs.frozen(kw_only=True)
class InvaSpreadLossConfig:
    """InvaSpread's softmax embedding loss: invariant positive and spread-out negatives within the batch.

    Options of the ``invaspread`` loss.

    Fields:
        temperature: tau of the softmax over the batch; 0.1 in the paper (sec. 4) and the official
            ``demo_seen.py --batch-t 0.1``.
    """

    temperature: float = attrs.field(default=0.1, validator=attrs.validators.gt(0))


@attrs.frozen(kw_only=True)
class SoftCrossEntropyConfig:
    """Cross-entropy between target probabilities and the tempered softmax of logits (SwAV, DINO).

    Options of the ``soft_cross_entropy`` loss.

    Attributes:
        temperature: the student's softmax temperature; 0.1 in SwAV (``--temperature``) and DINO
            (``student_temp``).
    """

    temperature: float = attrs.field(default=0.1, validator=attrs.validators.gt(0))


@hookimpl
def sslcore_register_losses(registry):
    losses = "sslcore.components.losses"
    registry.add("infonce", f"{losses}.infonce:build_infonce", InfoNCEConfig)
    registry.add("ntxent", f"{losses}.ntxent:build_ntxent", NTXentConfig)
    registry.add("mocov3_contrastive", f"{losses}.mocov3:build_mocov3_contrastive", MoCoV3ContrastiveConfig)
    registry.add("negative_cosine", f"{losses}.cosine:build_negative_cosine", NegativeCosineConfig)
    registry.add("normalized_mse", f"{losses}.cosine:build_normalized_mse", NormalizedMSEConfig)
    registry.add("supcon", f"{losses}.supcon:build_supcon", SupConConfig)
    registry.add("nce", f"{losses}.nce:build_nce", NCEConfig)
    registry.add("invaspread", f"{losses}.invaspread:build_invaspread_loss", InvaSpreadLossConfig)
    registry.add("soft_cross_entropy", f"{losses}.soft_cross_entropy:build_soft_cross_entropy", SoftCrossEntropyConfig)
