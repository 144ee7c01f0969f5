"""InstDisc for sslcore (Wu et al. 2018, "Unsupervised Feature Learning via Non-Parametric Instance Discrimination")."""

from sslcore_plugin_instdisc.method import InstDisc, InstDiscConfig, build_instdisc

__all__ = ["InstDisc", "InstDiscConfig", "build_instdisc"]
