"""What a run of the daily flow did, per connector: the run's summary.

Example::

    summary = RunSummary.from_json(stored)            # the ``runs.summary`` of a run
    for c in summary.connectors:
        print(c.connector, c.status, c.pulled, c.accepted, c.quarantined, c.certificates)

The flow writes the summary to the catalog (``runs.summary``, in the transaction that ends the
run) and as the ``daily-sharing-summary`` table artifact; ``onceonly run`` prints it from the
catalog, so the same summary is read whether the run was started by the CLI or by a worker.
Nothing here imports Prefect.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from contracts.validate import RuleTally, Validation
from lake.landing import LandedBatch

#: A connector's stages, and the run's, in the order they happen. Pull and validate run on a
#: second thread alongside land (``flows.prefetch``): ``wait`` is the time landing waited for the
#: next batch, so a connector's wall time is about land + wait.
STAGES = ("pull", "validate", "land", "wait")
RUN_STAGES = ("recover", "status", "extracts", "witnesses")


@contextlib.contextmanager
def timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    """Add the wall time of the block to ``seconds[stage]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - started


@dataclass
class ConnectorResult:
    connector: str
    dataset: str
    status: str = "ok"  # ok | failed | breached | busy
    error: str | None = None
    #: transient (the source or catalog may answer later) or terminal (someone must act).
    cause: str | None = None
    batches: int = 0
    pulled: int = 0
    accepted: int = 0
    quarantined: int = 0
    warnings: int = 0
    certificates: int = 0
    breached: bool = False
    #: For a breach: rows failed per error rule of the refused batch (counts, no values).
    breach_rules: dict[str, int] = field(default_factory=dict)
    rules: dict[str, RuleTally] = field(default_factory=dict)
    # Snapshot change detection (connectors.snapshot): rows new / changed, keys deleted.
    changes: dict[str, int] = field(default_factory=dict)
    # Certificates cancelled (注销) because their source record was deleted (lake.deletions).
    cancelled: int = 0
    seconds: float = 0.0
    #: Wall seconds in each stage: pull (the source), validate (the contract), land (lake, catalog,
    #: certificates, log). On Dask, pull is the wait for the workers' pulled and validated batches.
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def timed(self, stage: str) -> contextlib.AbstractContextManager[None]:
        return timed(self.stage_seconds, stage)

    def observe(self, validation: Validation) -> None:
        for o in validation.outcomes:
            self.rules.setdefault(o.rule, RuleTally(o.rule, o.severity)).add(o)

    def add(self, landed: LandedBatch) -> None:
        if landed.already_landed:
            return  # landed by an earlier attempt: counted then
        self.batches += 1
        self.pulled += landed.pulled
        self.accepted += landed.accepted
        self.quarantined += landed.quarantined
        self.warnings += landed.warnings
        self.certificates += landed.certificates

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["stage_seconds"] = {stage: round(s, 3) for stage, s in self.stage_seconds.items()}
        data.pop("rules")  # per-rule tallies are the contract artifact's, not the summary's
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConnectorResult:
        names = {f.name for f in dataclasses.fields(cls)} - {"rules"}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class RunSummary:
    run_id: str
    connectors: list[ConnectorResult]
    tree_size: int
    extracts: int
    expired: int
    vkey: str
    home: str
    catalog: str
    lake: str
    extracts_dir: str
    #: Runs found dead at the start of this one (marked crashed, their connectors taken over).
    crashed_runs: list[str] = field(default_factory=list)
    #: Staged batches a dead run left: published (committed) or discarded (never committed).
    recovered: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    #: Wall seconds of the run's stages: recover, connectors, status (expire and status lists),
    #: extracts, witnesses.
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> list[ConnectorResult]:
        return [c for c in self.connectors if c.status != "ok"]

    @property
    def ok(self) -> bool:
        return not self.failed and self.error is None

    @property
    def pulled(self) -> int:
        return sum(c.pulled for c in self.connectors)

    @property
    def certificates(self) -> int:
        return sum(c.certificates for c in self.connectors)

    def message(self) -> str:
        """One line an operator reads in the UI: what failed, or that everything landed."""
        if self.error:
            return self.error
        if not self.failed:
            return f"all {len(self.connectors)} connector(s) landed"
        parts = [f"{c.connector}: {c.error}" for c in self.failed]
        return f"{len(self.failed)} of {len(self.connectors)} connector(s) failed — " + "; ".join(parts)

    def connector_stage_seconds(self) -> dict[str, float]:
        """Seconds per connector stage, summed over the connectors (pull and validate overlap
        land: see ``STAGES``)."""
        total: dict[str, float] = {}
        for c in self.connectors:
            for stage, seconds in c.stage_seconds.items():
                total[stage] = total.get(stage, 0.0) + seconds
        return total

    def time_line(self) -> str:
        """Where the run's time went, in one line ('' for a run stored before it was measured)."""
        run = self.stage_seconds
        if not run:
            return ""
        connectors = self.connector_stage_seconds()
        inside = " · ".join(f"{stage} {connectors[stage]:.1f} s" for stage in STAGES if stage in connectors)
        outside = " · ".join(f"{stage} {run[stage]:.1f} s" for stage in RUN_STAGES if stage in run)
        within = f" ({inside})" if inside else ""
        return f"Time: connectors {run.get('connectors', 0.0):.1f} s{within}; {outside}"

    def report(self) -> str:
        """The run in words, for the operator (the ``daily-sharing-report`` markdown artifact):
        what landed, and for each connector that did not, why and what to do."""
        landed = [c for c in self.connectors if c.status == "ok"]
        accepted = sum(c.accepted for c in self.connectors)
        quarantined = sum(c.quarantined for c in self.connectors)
        cancelled = sum(c.cancelled for c in self.connectors)
        lines = [
            f"# Daily sharing, run {self.run_id}",
            "",
            f"**{'Every connector landed' if self.ok else self.message()}.**",
            "",
            f"- {self.pulled:,} rows pulled, {accepted:,} accepted, {quarantined:,} quarantined; "
            f"{self.certificates:,} certificates issued, {cancelled:,} cancelled, {self.expired:,} expired",
            f"- {len(landed)} of {len(self.connectors)} connector(s) ok; transparency log size "
            f"{self.tree_size:,}; {self.extracts} township extract(s) written",
        ]
        if self.crashed_runs:
            lines.append(f"- runs found dead and taken over: {', '.join(self.crashed_runs)}")
        if self.recovered.get("published") or self.recovered.get("discarded"):
            lines.append(
                f"- left by dead runs: {self.recovered.get('published', 0)} committed batch(es) published, "
                f"{self.recovered.get('discarded', 0)} uncommitted discarded"
            )
        if self.failed:
            lines += ["", "## What went wrong", ""]
        for c in self.failed:
            lines.append(f"### {c.connector} ({c.dataset}): {c.status}")
            lines += ["", c.error or "failed", "", _what_to_do(c), ""]
        return "\n".join(lines)

    def rows(self) -> list[dict[str, object]]:
        """The summary table: one row per connector."""
        return [
            {
                "connector": c.connector,
                "dataset": c.dataset,
                "status": c.status,
                "pulled": c.pulled,
                "accepted": c.accepted,
                "quarantined": c.quarantined,
                "warnings": c.warnings,
                "certificates": c.certificates,
                "changes": ", ".join(f"{n} {kind}" for kind, n in c.changes.items()),
                "cancelled": c.cancelled,
                "seconds": round(c.seconds, 1),
                "error": c.error or "",
            }
            for c in self.connectors
        ]

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["connectors"] = [c.to_json() for c in self.connectors]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunSummary:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["connectors"] = [ConnectorResult.from_json(c) for c in data.get("connectors", [])]
        return cls(**values)


def _what_to_do(c: ConnectorResult) -> str:
    if c.status == "breached":
        return (
            "**What to do:** nothing from the batch was issued and the cursor stayed put. Send the "
            "department its rows to correct (`onceonly quarantine report --department …`); the next run "
            "lands them once corrected."
        )
    if c.status == "busy":
        return "**What to do:** nothing: another run holds this connector; the next run pulls it."
    if c.cause == "transient":
        return (
            "**What to do:** usually nothing: the system did not answer; the next run resumes from the "
            "last landed batch. If it keeps failing, call the department."
        )
    if c.breached is False and "breached the contract of dataset" in (c.error or ""):
        return "**What to do:** see the connector whose batch breached this dataset's contract, above."
    return (
        "**What to do:** someone must act (a wrong password or URL, a malformed file, a changed schema, a "
        "contract to fix); `onceonly connectors test " + c.connector + "` shows the problem without landing."
    )


__all__ = ["ConnectorResult", "RunSummary", "timed"]
