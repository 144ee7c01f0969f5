"""The registration hook of the ``noise`` kind: its docstring is the kind's contract, its first line the kind's
description in `sslcore list`.

Hook specs live in a module of their own: a plugin module may not hold a function named like a hook that is not
its implementation.
"""

from sslcore.hookspecs import hookspec


@hookspec
def sslcore_register_noises(registry):
    """Register input noises, modules that map images to noised images of the same shape.

    ``factory(config) -> nn.Module``, called as ``noise(images)`` on ``(B, C, H, W)`` images; noise only in training
    mode, the identity in eval mode.
    """
