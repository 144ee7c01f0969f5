"""CLAE (Ho and Vasconcelos 2020, "Contrastive Learning with Adversarial Examples") for sslcore: recipes of SimCLR
and InvaSpread with the core's ``[attack]`` table and ``dual_bn`` backbone option."""
