"""Benchmarks (not tests): each prints figures and asserts nothing.  Run from the repository root as
``python -m bench.NAME`` (``--help`` says what each takes)."""
