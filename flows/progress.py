"""Progress of a long pull: a line per landed batch with the running total, rows/s and time left.

Example::

    progress = ProgressLine("gongan-household", logger, expected=connector.remaining(cursor))
    progress.landed(landed)     # "gongan-household: batch 3 (a1b2c3d4e5f6) landed — 30,000 of ~100,000
                                #  rows, 12,345 rows/s, ~6 s left: 10,000 accepted, 0 quarantined, ..."

The rows to come are the connector's estimate (``Connector.remaining``: a count where the
source can give one cheaply, e.g. ``sql``); without one the line has no time left.

The lines go to the run's log (Prefect UI, worker output, the terminal of ``onceonly run``),
one per batch of ``ONCEONLY_BATCH_SIZE`` rows; on a terminal ``onceonly run`` also draws a
progress bar from the same events (``cli.run``). When the rows to come are known, the run also
carries a progress artifact ``progress-<connector>`` (the percentage, and the same line as its
description), updated at each batch: the run's page shows how far a long pull is. A listener
registered with :func:`listen` gets every event as ``(connector, rows_so_far, rows_per_second)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from lake.landing import LandedBatch

Listener = Callable[[str, int, float], None]
_LISTENERS: list[Listener] = []


def listen(listener: Listener) -> Callable[[], None]:
    """Call ``listener`` on every landed batch of this process; returns the function that stops it."""
    _LISTENERS.append(listener)
    return lambda: _LISTENERS.remove(listener)


class ProgressLine:
    def __init__(self, connector: str, logger: Any, *, expected: int | None = None) -> None:
        self.connector = connector
        self.logger = logger
        self.expected = expected
        self.started = time.monotonic()
        self.rows = 0
        self.batches = 0
        self._artifact_id: Any = None

    def landed(self, landed: LandedBatch) -> None:
        self.batches += 1
        self.rows += landed.pulled
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.rows / elapsed
        again = " (landed by an earlier attempt)" if landed.already_landed else ""
        if self.expected and self.expected >= self.rows:
            left = (self.expected - self.rows) / rate if rate else 0.0
            done = f"{self.rows:,} of ~{self.expected:,} rows, {rate:,.0f} rows/s, ~{_duration(left)} left"
        else:
            done = f"{self.rows:,} rows so far, {rate:,.0f} rows/s"
        self.logger.info(
            "%s: batch %d (%s) landed%s — %s: %d accepted, %d quarantined, %d certificates",
            self.connector,
            self.batches,
            landed.batch_id[:12],
            again,
            done,
            landed.accepted,
            landed.quarantined,
            landed.certificates,
        )
        if self.expected:
            self._artifact(min(100.0, 100.0 * self.rows / self.expected), f"{self.connector}: {done}")
        for listener in list(_LISTENERS):
            listener(self.connector, self.rows, rate)

    def _artifact(self, percent: float, description: str) -> None:
        """Create, then update, the connector's progress artifact (only inside a Prefect run)."""
        from prefect.context import FlowRunContext, TaskRunContext

        from flows.redaction import progress_artifact, update_progress

        if FlowRunContext.get() is None and TaskRunContext.get() is None:
            return
        try:
            if self._artifact_id is None:
                self._artifact_id = progress_artifact(
                    key=f"progress-{self.connector}", progress=percent, description=description
                )
            else:
                update_progress(self._artifact_id, progress=percent, description=description)
        except Exception as exc:  # a progress display must never fail a pull
            self.logger.debug("%s: progress artifact not updated: %s", self.connector, exc)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


__all__ = ["Listener", "ProgressLine", "listen"]
