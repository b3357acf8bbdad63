"""The CI gate of issue 13: this commit's contracts, against the previous commit's, break nothing.

`make test` (and so CI, on its fresh clone) follows every contract this commit changes to the
connectors, matters, 一件事 bundles and rule files of this checkout, exactly as
``onceonly contracts impact OLD NEW`` does, and fails with its report when any would break.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from sharing.impact import Consumers, contract_impact

REPO = Path(__file__).resolve().parents[3]


def _previous_contracts(into: Path) -> Path:
    def git(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, check=False)

    if git("rev-parse", "--verify", "--quiet", "HEAD~1^{commit}").returncode != 0:
        pytest.skip(
            "this checkout has no previous commit (a shallow clone or no git): nothing to compare against"
        )
    archive = git("archive", "--format=tar", "HEAD~1", "contracts/datasets")
    if archive.returncode != 0:  # the previous commit had no contracts folder
        (into / "contracts" / "datasets").mkdir(parents=True)
    else:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(into, filter="data")
    return into / "contracts" / "datasets"


def test_the_contracts_of_this_commit_break_nothing_downstream(tmp_path: Path) -> None:
    old = _previous_contracts(tmp_path)
    report = contract_impact(old, REPO / "contracts" / "datasets", Consumers.of_tree(REPO))
    broken = [
        f"{d.dataset} ({d.before} -> {d.after}): {a}"
        for d in report.datasets
        for a in d.affected()
        if a.breaks
    ]
    assert not broken, "contract changes that would break consumers:\n" + "\n".join(broken)
