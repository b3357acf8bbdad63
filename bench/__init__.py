"""Benchmarks: `make bench` runs them; each prints ratios against a baseline measured in the same run."""


class Unavailable(RuntimeError):
    """A benchmark that cannot run on this machine (a tool missing): said, and the others go on."""
