"""sslcore: a plugin-based framework for self-supervised visual representation learning."""

import pluggy

hookimpl = pluggy.HookimplMarker("sslcore")

from sslcore.errors import SslcoreError  # noqa: E402

__all__ = ["SslcoreError", "hookimpl"]
