"""The lifecycle of an e-certificate after issue: 暂扣, 暂扣发还, 撤销, 吊销, 注销, 失效.

Example::

    lifecycle = Lifecycle(log)
    with catalog.begin() as conn:
        lifecycle.change(conn, cert_id, "suspend", reason="licence under investigation")
        lifecycle.expire_due(conn, today=dt.date.today())        # the daily flow's expire pass
        lifecycle.cancel_for_deleted(conn, "business_licence", ["91120114MA..."])
        publish_status_lists(conn, log)                           # the lists show it at once

Issue and renew/change (a new version naming the previous one) happen in ``lake.landing``:
each version is its own log leaf. Every other change is a NEW log leaf of kind ``lifecycle``
(``evidence.log.log_entry``: RFC 8785 JSON ``{"schema": "onceonly-log-entry/1", "kind":
"lifecycle", ...}`` naming the certificate, the action, the status before and after, the
reason and the time); a logged leaf is never edited. ``certificates.status`` holds the current state
and ``certificate_events`` the readable history, both written in the same transaction as the
leaf. A change that is not allowed from the current state (restoring a revoked certificate)
raises :class:`LifecycleError` naming the certificate, its state and what is allowed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, func, insert, select, update
from sqlalchemy.engine import Connection

from catalog import certificate_events, certificates, chunks, utcnow
from evidence.certificate import (
    STATUS_CANCELLED,
    STATUS_EXPIRED,
    STATUS_REVOKED,
    STATUS_SUSPENDED,
    STATUS_VALID,
    STATUS_WITHDRAWN,
)
from evidence.log import KIND_LIFECYCLE, TransparencyLog, log_entry
from evidence.townships import mark_stale
from onceonly.errors import EvidenceError
from onceonly.privacy import scrub_text

LOG_KIND = KIND_LIFECYCLE


@dataclass(frozen=True)
class Transition:
    action: str
    label: str  # GB/T 36903 wording of the operation
    allowed_from: frozenset[str]
    status: str


_IN_FORCE = frozenset({STATUS_VALID, STATUS_SUSPENDED})
TRANSITIONS: dict[str, Transition] = {
    t.action: t
    for t in (
        Transition("suspend", "暂扣", frozenset({STATUS_VALID}), STATUS_SUSPENDED),
        Transition("restore", "暂扣发还", frozenset({STATUS_SUSPENDED}), STATUS_VALID),
        Transition("revoke", "撤销", _IN_FORCE, STATUS_REVOKED),
        Transition("withdraw", "吊销", _IN_FORCE, STATUS_WITHDRAWN),
        Transition("cancel", "注销", _IN_FORCE, STATUS_CANCELLED),
        Transition("expire", "失效", _IN_FORCE, STATUS_EXPIRED),
    )
}


class LifecycleError(EvidenceError):
    """A lifecycle change was refused: unknown certificate, or not allowed from its state."""


@dataclass(frozen=True)
class Change:
    cert_id: str
    action: str
    status_before: str
    status_after: str
    reason: str
    leaf_index: int
    issuer_code: str


@dataclass(frozen=True)
class _Target:
    cert_id: str
    status: str
    issuer_code: str
    township: str | None


class Lifecycle:
    def __init__(self, log: TransparencyLog) -> None:
        self.log = log

    def change(
        self, conn: Connection, cert_id: str, action: str, *, reason: str, now: dt.datetime | None = None
    ) -> Change:
        """Apply ``action`` (``suspend``, ``restore``, ``revoke``, ``withdraw``, ``cancel``,
        ``expire``) to one certificate; raise :class:`LifecycleError` if it is not allowed."""
        transition = _transition(action)
        if not reason or not reason.strip():
            raise LifecycleError(f"{action} of {cert_id}: a reason is required")
        row = conn.execute(
            select(
                certificates.c.cert_id,
                certificates.c.status,
                certificates.c.issuer_code,
                certificates.c.township,
            )
            .where(certificates.c.cert_id == cert_id)
            .with_for_update()
        ).first()
        if row is None:
            raise LifecycleError(f"no certificate {cert_id!r} in the catalog")
        if row.status not in transition.allowed_from:
            allowed = " or ".join(sorted(transition.allowed_from))
            raise LifecycleError(
                f"certificate {cert_id} is {row.status}; {action} ({transition.label}) applies only to "
                f"a certificate that is {allowed}"
            )
        target = _Target(row.cert_id, row.status, row.issuer_code, row.township)
        return self._apply(conn, [target], transition, reason, now or utcnow())[0]

    def expire_due(
        self, conn: Connection, today: dt.date, *, now: dt.datetime | None = None, slice_size: int = 10_000
    ) -> int:
        """失效 for every certificate in force whose ``valid_to`` is before ``today``; how many.

        ``slice_size`` certificates at a time, in the order of their identifiers (each slice its
        own log append, so its own signed checkpoint, all in the caller's transaction): the first
        pass over a district holds ~12 % of its certificates, and 120,000 of them at once took
        the run's heap in use from 184 to 514 MB."""
        if slice_size < 1:
            raise ValueError(f"slice_size must be at least 1, not {slice_size}")
        now = now or utcnow()
        reason = f"valid_to passed (expire pass of {today.isoformat()})"
        due = and_(
            certificates.c.status.in_(sorted(_IN_FORCE)),
            certificates.c.valid_to.is_not(None),
            certificates.c.valid_to < today,
        )
        expired, after = 0, ""
        while True:
            rows = conn.execute(
                _targets()
                .where(and_(due, certificates.c.cert_id > after))
                .order_by(certificates.c.cert_id)
                .limit(slice_size)
            ).all()
            if not rows:
                return expired
            targets = [_Target(r.cert_id, r.status, r.issuer_code, r.township) for r in rows]
            expired += len(self._apply(conn, targets, TRANSITIONS["expire"], reason, now))
            after = rows[-1].cert_id

    def cancel_for_deleted(
        self,
        conn: Connection,
        dataset: str,
        keys: Iterable[str],
        *,
        reason: str = "the source record was deleted",
        now: dt.datetime | None = None,
    ) -> list[Change]:
        """注销 the newest version in force of every certificate issued from the deleted records.

        ``keys`` are record keys as in ``certificates.record_key`` (the contract's primary key
        columns joined by ``|``). Keys with no certificate in force are ignored, so a deletion
        signal seen twice cancels once.
        """
        targets: list[_Target] = []
        for chunk in chunks(sorted(set(keys))):
            newest = (
                select(
                    certificates.c.record_key,
                    certificates.c.holder_id,
                    func.max(certificates.c.version).label("version"),
                )
                .where(and_(certificates.c.dataset == dataset, certificates.c.record_key.in_(chunk)))
                .group_by(certificates.c.record_key, certificates.c.holder_id)
                .subquery()
            )
            rows = conn.execute(
                _targets()
                .join(
                    newest,
                    and_(
                        certificates.c.record_key == newest.c.record_key,
                        certificates.c.holder_id == newest.c.holder_id,
                        certificates.c.version == newest.c.version,
                    ),
                )
                .where(and_(certificates.c.dataset == dataset, certificates.c.status.in_(sorted(_IN_FORCE))))
            ).all()
            targets += [_Target(r.cert_id, r.status, r.issuer_code, r.township) for r in rows]
        return self._apply(conn, targets, TRANSITIONS["cancel"], reason, now or utcnow())

    def carry_suspensions(
        self, conn: Connection, renewed: Sequence[tuple[str, str]], *, now: dt.datetime | None = None
    ) -> list[Change]:
        """A renewal does not lift a suspension: new versions of 暂扣 certificates are 暂扣 too.

        ``renewed`` holds ``(new version id, previous version id)`` pairs, as landing issues them;
        only a suspended previous version is carried over (one revoked by the source arrives
        with the source's own status).
        """
        if not renewed:
            return []
        previous_of = {new: previous for new, previous in renewed}
        suspended: set[str] = set()
        for chunk in chunks(sorted(set(previous_of.values()))):
            suspended |= set(
                conn.execute(
                    select(certificates.c.cert_id).where(
                        and_(certificates.c.cert_id.in_(chunk), certificates.c.status == STATUS_SUSPENDED)
                    )
                ).scalars()
            )
        carried = sorted(new for new, previous in previous_of.items() if previous in suspended)
        targets: list[_Target] = []
        for chunk in chunks(carried):
            rows = conn.execute(
                _targets().where(
                    and_(certificates.c.cert_id.in_(chunk), certificates.c.status == STATUS_VALID)
                )
            ).all()
            targets += [_Target(r.cert_id, r.status, r.issuer_code, r.township) for r in rows]
        reason = "the previous version is suspended (暂扣); the suspension carries over to this renewal"
        return self._apply(conn, targets, TRANSITIONS["suspend"], reason, now or utcnow())

    def _apply(
        self,
        conn: Connection,
        targets: Sequence[_Target],
        transition: Transition,
        reason: str,
        now: dt.datetime,
    ) -> list[Change]:
        if not targets:
            return []
        # The log is published: a reason typed at a counter may quote a citizen ID number.
        reason = scrub_text(reason.strip())
        at = now.astimezone(dt.UTC).isoformat(timespec="seconds")
        entries = [
            log_entry(
                KIND_LIFECYCLE,
                t.cert_id,
                {
                    "certificate": t.cert_id,
                    "action": transition.action,
                    "operation": transition.label,
                    "status_before": t.status,
                    "status": transition.status,
                    "reason": reason,
                    "at": at,
                },
            )
            for t in targets
        ]
        appended = self.log.append(conn, entries)
        changes = [
            Change(
                t.cert_id,
                transition.action,
                t.status,
                transition.status,
                reason,
                appended.first_index + i,
                t.issuer_code,
            )
            for i, t in enumerate(targets)
        ]
        for before in sorted({t.status for t in targets}):
            ids = [t.cert_id for t in targets if t.status == before]
            for chunk in chunks(ids):
                conn.execute(
                    update(certificates)
                    .where(and_(certificates.c.cert_id.in_(chunk), certificates.c.status == before))
                    .values(status=transition.status)
                )
        conn.execute(
            insert(certificate_events),
            [
                {
                    "cert_id": c.cert_id,
                    "action": c.action,
                    "status_before": c.status_before,
                    "status_after": c.status_after,
                    "reason": c.reason,
                    "leaf_index": c.leaf_index,
                    "occurred_at": now,
                }
                for c in changes
            ],
        )
        mark_stale(conn, {t.township for t in targets})
        return changes


def history(conn: Connection, cert_id: str) -> list[Change]:
    """The lifecycle changes of one certificate, oldest first."""
    rows = conn.execute(
        select(certificate_events, certificates.c.issuer_code)
        .join(certificates, certificates.c.cert_id == certificate_events.c.cert_id)
        .where(certificate_events.c.cert_id == cert_id)
        .order_by(certificate_events.c.leaf_index)
    ).all()
    return [
        Change(
            r.cert_id, r.action, r.status_before, r.status_after, r.reason, int(r.leaf_index), r.issuer_code
        )
        for r in rows
    ]


def _transition(action: str) -> Transition:
    if action not in TRANSITIONS:
        raise LifecycleError(f"unknown lifecycle action {action!r} (known: {', '.join(TRANSITIONS)})")
    return TRANSITIONS[action]


def _targets() -> Select[Any]:
    return select(
        certificates.c.cert_id, certificates.c.status, certificates.c.issuer_code, certificates.c.township
    )


__all__ = [
    "TRANSITIONS",
    "Change",
    "Lifecycle",
    "LifecycleError",
    "Transition",
    "history",
]
