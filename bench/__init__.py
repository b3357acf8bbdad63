"""Benchmarks: `make bench` runs them; each prints ratios against a baseline measured in the same run."""
