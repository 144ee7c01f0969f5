"""The registration hook of the ``context`` kind, added by this plugin; its first docstring line is the kind's
description in ``sslcore list``. (A plugin module may not hold a hook-named function it does not implement, so
the spec lives here.)"""

from sslcore.hookspecs import hookspec


@hookspec
def sslcore_register_contexts(registry):
    """Register context networks: causal maps from a feature grid to a context grid (CPC's autoregressive model).

    ``factory(config, in_dim) -> nn.Module`` with an int ``out_dim``, called on ``(B, in_dim, H, W)`` feature grids and
    returning ``(B, out_dim, H, W)``; the output at row i may depend on input rows <= i only (tested for every entry).
    """
