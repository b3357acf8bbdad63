"""The evidence benchmark runs the pipeline's own issuance and its floors end to end (small)."""

from __future__ import annotations

import math

from bench import evidence


def test_run_issues_every_certificate_and_measures_each_floor() -> None:
    figures = evidence.run(3000)
    assert figures["certificates"] == 3000
    for rate in (
        "onceonly_certificates_per_s",
        "catalog_row_floor_per_s",
        "log_only_certificates_per_s",
        "skip_index_floor_per_s",
        "baseline_sign_each_per_s",
    ):
        assert figures[rate] > 0, rate
    # Issuing with the rows cannot beat issuing without them plus inserting them.
    assert figures["log_only_then_index_per_s"] < figures["log_only_certificates_per_s"]
    steps = figures["issuance_us_per_certificate_by_step"]
    assert steps["certificate rows (executemany)"] > 0 and steps["commitments (salted SHA-256)"] > 0
    small, large = figures["log"]
    assert (small["leaves"], large["leaves"]) == (3000, 30000)
    # An inclusion proof in a tree of n leaves has about log2(n) hashes.
    for c in (small, large):
        assert (
            math.ceil(math.log2(c["leaves"])) - 1
            <= c["inclusion_proof_hashes"]
            <= math.ceil(math.log2(c["leaves"]))
        )
    assert all(0 < c["bytes_per_leaf"] < 1000 for c in (small, large))
