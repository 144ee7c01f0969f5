"""Speed benchmarks of sslcore against a hand-written PyTorch loop and against lightly.

``python -m benchmarks.throughput --help`` runs them; ``docs/benchmarks.md`` explains what is measured and
holds the latest results. This package is a repository tool, not part of the installed ``sslcore``.
"""
