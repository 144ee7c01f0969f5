"""Evaluation of learned representations."""
