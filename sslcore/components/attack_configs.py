"""The built-in attacks' options (``fgsm``, ``pgd``) and their registration; the attack itself is
:class:`sslcore.components.attacks.Attack`, imported only when a run builds one."""

from __future__ import annotations

import attrs

from sslcore import hookimpl

_v = attrs.validators


@attrs.frozen(kw_only=True)
class FGSMConfig:
    """The fast gradient sign method (Goodfellow et al. 2015): one step of ``epsilon`` in the gradient's sign.

    Fields:
        epsilon: L-infinity budget in pixel units (images in [0, 1], before normalisation).
        weight: the adversarial loss's weight in ``clean + weight * adversarial``.
        from_view: the view the adversarial view is crafted from.
        into_view: the view the adversarial view replaces in the adversarial batch.
        random_start: start from a uniform draw in the epsilon ball instead of the clean view.
    """

    epsilon: float = attrs.field(validator=[_v.gt(0), _v.le(1)])
    weight: float = attrs.field(default=1.0, validator=_v.ge(0))
    from_view: int = attrs.field(default=0, validator=_v.ge(0))
    into_view: int = attrs.field(default=1, validator=_v.ge(0))
    random_start: bool = False


@attrs.frozen(kw_only=True)
class PGDConfig:
    """Projected gradient descent (Madry et al. 2018): ``steps`` signed steps of ``step_size``, each projected
    back into the epsilon ball. ``epsilon``, ``weight``, ``from_view``, ``into_view`` as in ``fgsm``."""

    epsilon: float = attrs.field(validator=[_v.gt(0), _v.le(1)])
    steps: int = attrs.field(validator=_v.ge(1))
    step_size: float = attrs.field(validator=_v.gt(0))
    weight: float = attrs.field(default=1.0, validator=_v.ge(0))
    from_view: int = attrs.field(default=0, validator=_v.ge(0))
    into_view: int = attrs.field(default=1, validator=_v.ge(0))
    random_start: bool = True


@hookimpl
def sslcore_register_attacks(registry):
    attack = "sslcore.components.attacks:Attack"
    registry.add("fgsm", attack, FGSMConfig, description="Fast gradient sign method: one signed step of epsilon.")
    registry.add("pgd", attack, PGDConfig, description="Projected gradient descent: signed steps within epsilon.")
