"""How often a dataset must land: its contract's ``frequency`` and ``latency`` SLA properties.

Example::

    window = freshness_window(compiled.contract)     # frequency 1 d + latency 1 d -> 2 days
    if window is not None and now - last_landed > window.within:
        ...                                          # the dataset is stale

ODCS v3 ``slaProperties``: ``frequency`` is how often the source produces new data, ``latency``
how long after that it may take to reach us. A dataset whose newest landed batch is older than
their sum is *stale*: its department has gone silent. This window is what the freshness check
(``flows/watch.py``) and the freshness automation (``onceonly alerts install``) both use. Units
are ODCS's (``d``/``day``/``days``, ``h``/…, ``y``/``yr``/``years``) plus minutes and seconds
for near-real-time sources; ``m`` alone is refused (month or minute?). A contract without
``frequency`` has no freshness window.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from contracts.model import Contract, SlaProperty

# Seconds per unit (a year as 365 days: an SLA, not a calendar).
SLA_UNITS: dict[str, int] = {
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
    "y": 31536000, "yr": 31536000, "year": 31536000, "years": 31536000,
}  # fmt: skip


class SlaUnitError(ValueError):
    """An SLA duration whose value or unit cannot be read; the message names the property."""


@dataclass(frozen=True)
class FreshnessWindow:
    """How long a dataset may go without a landed batch before it is stale."""

    dataset: str
    frequency: dt.timedelta
    latency: dt.timedelta

    @property
    def within(self) -> dt.timedelta:
        return self.frequency + self.latency

    def describe(self) -> str:
        if not self.latency:
            return f"frequency {_human(self.frequency)}"
        return f"frequency {_human(self.frequency)} + latency {_human(self.latency)}"


def sla_duration(sla: SlaProperty) -> dt.timedelta:
    """An SLA property's value and unit as a duration; raises :class:`SlaUnitError`."""
    value = sla.value
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise SlaUnitError(f"slaProperties {sla.property}: value {value!r} is not a non-negative number")
    unit = (sla.unit or "").strip().lower()
    if unit not in SLA_UNITS:
        known = ", ".join(sorted(set(SLA_UNITS)))
        raise SlaUnitError(f"slaProperties {sla.property}: unit {sla.unit!r} is not one of {known}")
    return dt.timedelta(seconds=value * SLA_UNITS[unit])


def freshness_window(contract: Contract) -> FreshnessWindow | None:
    """The dataset's window from its contract (None without ``frequency``).

    Only properties of the whole dataset count (no ``element``, or the contract's
    ``slaDefaultElement``); ``latency`` is optional (zero).
    """
    found: dict[str, dt.timedelta] = {}
    for sla in contract.slaProperties:
        whole = sla.element is None or sla.element == contract.slaDefaultElement
        if sla.property in ("frequency", "latency") and sla.property not in found and whole:
            found[sla.property] = sla_duration(sla)
    if "frequency" not in found:
        return None
    if found["frequency"] <= dt.timedelta(0):
        raise SlaUnitError("slaProperties frequency: must be more than zero")
    return FreshnessWindow(contract.id, found["frequency"], found.get("latency", dt.timedelta(0)))


def _human(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


__all__ = ["SLA_UNITS", "FreshnessWindow", "SlaUnitError", "freshness_window", "sla_duration"]
