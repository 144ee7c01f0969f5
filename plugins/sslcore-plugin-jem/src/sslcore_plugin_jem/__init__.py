"""JEM and HDGE for sslcore: a classifier trained as an energy-based model of its inputs (Grathwohl et al. 2020,
"Your Classifier is Secretly an Energy Based Model"; Liu and Abbeel 2020, "Hybrid Discriminative-Generative
Training via Contrastive Learning")."""

from sslcore.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "HdgeConfig": "sslcore_plugin_jem.config",
        "JemConfig": "sslcore_plugin_jem.config",
        "build_hdge": "sslcore_plugin_jem.method",
        "build_jem": "sslcore_plugin_jem.method",
    },
)

__all__ = ["HdgeConfig", "JemConfig", "build_hdge", "build_jem"]
