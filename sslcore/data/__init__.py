"""Data: dataset sources and view transforms."""
