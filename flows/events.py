"""The Prefect events OnceOnly emits, one function each: what automations and operators react to.

Example::

    batch_landed(landed, dataset="household", run_id=run_id)   # onceonly.batch.landed
    connector_failed(result, run_id=run_id)                     # onceonly.connector.failed

Every event's resource is what it is about — ``onceonly.dataset.<id>`` for data,
``onceonly.connector.<name>`` for a department system, ``onceonly.key.<name>+<key id>``,
``onceonly.log.<origin>``, ``onceonly.witness.<name>`` — with the connector or dataset as a
related resource, so an automation matches on one of them (``deployments/automations/``,
``onceonly alerts install``). Payloads carry counts, ids and one-line causes, never rows; every
event passes the scrubber (``flows.redaction.event``: ID numbers masked, secrets removed).

=================================  =========================  ==================================
event                              resource                   emitted by
=================================  =========================  ==================================
``onceonly.batch.landed``          dataset (connector)        each batch landed (freshness)
``onceonly.dataset.recovered``     dataset (connector)        a landing after the dataset was stale
``onceonly.connector.failed``      connector (dataset)        a pull that failed; ``cause``
                                                              transient / terminal
``onceonly.contract.breached``     dataset (connector)        a batch over its maxErrorRate
``onceonly.dataset.stale``         dataset                    the watch flow, past the SLA
``onceonly.key.expiring``          signing key                the watch flow, near max age
``onceonly.key.compromised``       signing key                the watch flow, an active key marked
``onceonly.log.verify-failed``     log                        the watch flow's audit, the log part
``onceonly.audit.failed``          log                        the watch flow's audit, anything else
``onceonly.witness.refused``       witness                    a witness that refused a checkpoint
``onceonly.approval.unread``       approval (supervisor)      the supervision flow: a pushed
                                                              approval not signed for in time
``onceonly.approval.no-feedback``  approval (supervisor)      the supervision flow: no 监管结果
                                                              in time
=================================  =========================  ==================================
"""

from __future__ import annotations

from typing import Any

from flows.redaction import event

LANDED = "onceonly.batch.landed"
RECOVERED = "onceonly.dataset.recovered"
CONNECTOR_FAILED = "onceonly.connector.failed"
BREACHED = "onceonly.contract.breached"
STALE = "onceonly.dataset.stale"
KEY_EXPIRING = "onceonly.key.expiring"
KEY_COMPROMISED = "onceonly.key.compromised"
LOG_VERIFY_FAILED = "onceonly.log.verify-failed"
AUDIT_FAILED = "onceonly.audit.failed"
WITNESS_REFUSED = "onceonly.witness.refused"
APPROVAL_UNREAD = "onceonly.approval.unread"
APPROVAL_NO_FEEDBACK = "onceonly.approval.no-feedback"

EVENTS = (
    LANDED,
    RECOVERED,
    CONNECTOR_FAILED,
    BREACHED,
    STALE,
    KEY_EXPIRING,
    KEY_COMPROMISED,
    LOG_VERIFY_FAILED,
    AUDIT_FAILED,
    WITNESS_REFUSED,
    APPROVAL_UNREAD,
    APPROVAL_NO_FEEDBACK,
)


def dataset_resource(dataset: str) -> dict[str, str]:
    return {"prefect.resource.id": f"onceonly.dataset.{dataset}", "prefect.resource.name": dataset}


def connector_resource(connector: str) -> dict[str, str]:
    return {"prefect.resource.id": f"onceonly.connector.{connector}", "prefect.resource.name": connector}


def _related(resource: dict[str, str], role: str) -> dict[str, str]:
    return {**resource, "prefect.resource.role": role}


def batch_landed(
    *, connector: str, dataset: str, batch_id: str, run_id: str, rows: int, accepted: int, certificates: int
) -> None:
    event(
        LANDED,
        resource=dataset_resource(dataset),
        related=[_related(connector_resource(connector), "connector")],
        payload={
            "connector": connector,
            "dataset": dataset,
            "batch_id": batch_id,
            "run_id": run_id,
            "rows": rows,
            "accepted": accepted,
            "certificates": certificates,
        },
    )


def dataset_recovered(*, connector: str, dataset: str, run_id: str, silent_for: str) -> None:
    event(
        RECOVERED,
        resource=dataset_resource(dataset),
        related=[_related(connector_resource(connector), "connector")],
        payload={"connector": connector, "dataset": dataset, "run_id": run_id, "silent_for": silent_for},
    )


def connector_failed(
    *, connector: str, dataset: str, run_id: str, cause: str, status: str, error: str
) -> None:
    """``cause``: transient (the system may answer later: retry) or terminal (someone must act)."""
    event(
        CONNECTOR_FAILED,
        resource=connector_resource(connector),
        related=[_related(dataset_resource(dataset), "dataset")],
        payload={
            "connector": connector,
            "dataset": dataset,
            "run_id": run_id,
            "cause": cause,
            "status": status,
            "error": error,
        },
    )


def contract_breached(*, connector: str, dataset: str, first: bool, payload: dict[str, Any]) -> None:
    """Announced at every refusal; the resource label ``onceonly.first`` is ``true`` only the first
    time a batch is refused (the same rows pulled again and still bad say ``false``), so an
    automation notifies once per breach, not once per run."""
    event(
        BREACHED,
        resource={**dataset_resource(dataset), "onceonly.first": "true" if first else "false"},
        related=[_related(connector_resource(connector), "connector")],
        payload={"connector": connector, "dataset": dataset, "first": first, **payload},
    )


def dataset_stale(*, dataset: str, message: str, last_landed: str | None, window_seconds: float) -> None:
    event(
        STALE,
        resource=dataset_resource(dataset),
        payload={
            "dataset": dataset,
            "message": message,
            "last_landed": last_landed,
            "window_seconds": window_seconds,
        },
    )


def _key_resource(name: str, key_id: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"onceonly.key.{name}+{key_id}",
        "prefect.resource.name": f"{name}+{key_id}",
    }


def key_expiring(*, name: str, key_id: str, created: str, expires: str, message: str) -> None:
    event(
        KEY_EXPIRING,
        resource=_key_resource(name, key_id),
        payload={"key": f"{name}+{key_id}", "created": created, "expires": expires, "message": message},
    )


def key_compromised(*, name: str, key_id: str, since: str, message: str) -> None:
    event(
        KEY_COMPROMISED,
        resource=_key_resource(name, key_id),
        payload={"key": f"{name}+{key_id}", "compromised_since": since, "message": message},
    )


def _log_resource(origin: str) -> dict[str, str]:
    return {"prefect.resource.id": f"onceonly.log.{origin}", "prefect.resource.name": origin}


def log_verify_failed(*, origin: str, findings: list[str]) -> None:
    event(
        LOG_VERIFY_FAILED,
        resource=_log_resource(origin),
        payload={"origin": origin, "findings": findings[:20], "count": len(findings)},
    )


def audit_failed(*, origin: str, findings: list[str]) -> None:
    event(
        AUDIT_FAILED,
        resource=_log_resource(origin),
        payload={"origin": origin, "findings": findings[:20], "count": len(findings)},
    )


def witness_refused(*, witness: str, tree_size: int, error: str, transient: bool) -> None:
    event(
        WITNESS_REFUSED,
        resource={"prefect.resource.id": f"onceonly.witness.{witness}", "prefect.resource.name": witness},
        payload={"witness": witness, "tree_size": tree_size, "error": error, "transient": transient},
    )


def approval_overdue(
    *,
    kind: str,
    approval_id: str,
    supervisor: str,
    case_id: str | None,
    township: str | None,
    pushed_at: str,
    waited_hours: float,
    message: str,
) -> None:
    """An approval pushed to its supervisor and not signed for (``kind`` unread) or not answered
    with a 监管结果 (``no-feedback``) in time: once per approval and kind."""
    event(
        APPROVAL_UNREAD if kind == "unread" else APPROVAL_NO_FEEDBACK,
        resource={
            "prefect.resource.id": f"onceonly.approval.{approval_id}",
            "prefect.resource.name": approval_id,
        },
        related=[
            _related(
                {
                    "prefect.resource.id": f"onceonly.supervisor.{supervisor}",
                    "prefect.resource.name": supervisor,
                },
                "supervisor",
            )
        ],
        payload={
            "approval_id": approval_id,
            "case_id": case_id,
            "supervisor": supervisor,
            "township": township,
            "pushed_at": pushed_at,
            "waited_hours": waited_hours,
            "message": message,
        },
    )


__all__ = [
    "APPROVAL_NO_FEEDBACK",
    "APPROVAL_UNREAD",
    "AUDIT_FAILED",
    "BREACHED",
    "CONNECTOR_FAILED",
    "EVENTS",
    "KEY_COMPROMISED",
    "KEY_EXPIRING",
    "LANDED",
    "LOG_VERIFY_FAILED",
    "RECOVERED",
    "STALE",
    "WITNESS_REFUSED",
    "approval_overdue",
    "audit_failed",
    "batch_landed",
    "connector_failed",
    "connector_resource",
    "contract_breached",
    "dataset_recovered",
    "dataset_resource",
    "dataset_stale",
    "key_compromised",
    "key_expiring",
    "log_verify_failed",
    "witness_refused",
]
