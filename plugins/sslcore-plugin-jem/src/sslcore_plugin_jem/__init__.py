"""JEM and HDGE for sslcore: a classifier trained as an energy-based model of its inputs (Grathwohl et al. 2020,
"Your Classifier is Secretly an Energy Based Model"; Liu and Abbeel 2020, "Hybrid Discriminative-Generative
Training via Contrastive Learning")."""

from sslcore_plugin_jem.method import HdgeConfig, JemConfig, build_hdge, build_jem

__all__ = ["HdgeConfig", "JemConfig", "build_hdge", "build_jem"]
