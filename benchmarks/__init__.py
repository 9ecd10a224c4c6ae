"""Benchmarks behind the figures in README.md and docs/: run each from the repository root as a
module, ``python -m benchmarks.<name> --help``.  Each prints its figures with a last line of
``key=value`` pairs; what it needs that a fresh clone lacks it builds, or its first line of
output names the one command that does.
"""
