"""BYOL (Grill et al. 2020, "Bootstrap Your Own Latent", Sec. 3.1-3.2, Eq. 2) as a look-up method without a key
store: each view's prediction regresses the target network's projection of the other view.

The online network ``f_theta, g_theta`` and predictor ``q_theta`` make the queries; the target network (an EMA of
backbone + projector, moved by the engine after the optimizer step, as the official code's
``update_target_network``) makes the keys under ``no_grad``; the loss is ``L + L~`` (both directions summed).
"""

from __future__ import annotations

from sslcore.lookup import LookupDesign, LookupMethod, build_lookup
from sslcore.method import MethodParts
from sslcore_plugin_byol.config import BYOLConfig


def build_byol(config: BYOLConfig, parts: MethodParts) -> LookupMethod:
    """BYOL: online network with predictor regressing an EMA target network's projection of the other view."""
    design = LookupDesign(pairs=((0, 1), (1, 0)), predictor=True, use_key_store=False)
    return build_lookup("byol", design, parts)
