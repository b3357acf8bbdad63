"""审批与监管联动: each landed approval pushed to its supervising department, and what comes back.

Example::

    client = supervisor_client(settings)                          # token resolved by NAME
    pushed = push_pending(catalog, lake, log, client, dataset="approval", district="120114")
    receipts = pull_receipts(catalog, log, client)                # 签收 and 监管结果
    overdue = find_overdue(catalog, unread_after=dt.timedelta(hours=24),
                           feedback_after=dt.timedelta(days=15))   # then mark_alerted(...)

**Push.** Every approval of the dataset that landed (the lake's accepted rows, the newest row
of each approval id) and was not yet accepted by the supervisor is sent once: ``POST
{url}/approvals`` with the approval as a signed note — one line of RFC 8785 JSON (``"schema":
"onceonly-supervision-push/1"``) signed with the district's log key, so the supervisor checks
it offline with the district's verifier keys (a forged or altered push is refused) — and the
header ``Idempotency-Key: <approval id>``. The supervisor opens one case per approval id: a
retry (a timeout after the case was opened, a run that died before recording the answer)
gets the same case back, never a second. The body is a function of the approval only (no
time in it), so a retry sends the same bytes. The legal representative's ID number is sent
masked; the log entry recording the push (kind ``supervision``, event ``pushed``) names the
approval and the case, commits to what was pushed by its SHA-256 (not the business's credit
code, which for a 个体工商户 names a person, nor its name, both published with the log), and
commits to the representative's ID number (``evidence.commitment``) — they see the push among
the uses of their data.

Timeouts, refused connections, 5xx and 429 are retried (``attempts``, backing off); a
supervisor still unreachable ends the pushing for this run with :class:`SupervisorUnavailable`
recorded — the approvals not pushed stay pending and go on the next run, nothing is lost.
A refusal (4xx: a bad signature, a conflicting approval) is recorded for that approval; a
refused token (401/403) stops the pushing.

**Corrections.** ``body_sha256`` records the body accepted: an approval corrected since (its
newest landed row gives another body) is pending again, and sent as an amendment, ``PUT
{url}/approvals/{id}``, which the supervisor records on the same case (logged, event
``amended``, with the body it amends). A push refused 409 (a case is open with another body:
an earlier push timed out after opening it, then the approval was corrected) is sent as an
amendment too; the case a refusal names is recorded.

**Receipts.** ``GET {url}/receipts?after=SEQ``: read receipts (签收) and feedback (监管结果),
kept once each by receipt id however often the supervisor sends them, each logged (events
``read`` / ``feedback``), and the approval's ``read_at`` / ``feedback_at`` set by the first. A
receipt is validated first (kind ``read`` or ``feedback``, ids of at most 64 characters, a
time): one that is not valid is refused with a warning and skipped. A receipt whose approval's
push is not recorded here (a run died between push and record; two runs overlapping) is kept
all the same, held, and logged and applied when the push is recorded — never lost behind the
cursor. The supervisor's free text is never published: the log entry carries the result's
SHA-256 only, the catalog the text scrubbed (citizen IDs, long digit runs) and cut to
:data:`MAX_RESULT` characters.

**Overdue.** An approval pushed and unread after ``unread_after``, or without feedback after
``feedback_after``: :func:`find_overdue` lists those not announced yet, the caller announces
them (a Prefect event, ``flows.supervision``) and :func:`mark_alerted` records it, so a later
run does not announce them again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from sqlalchemy import and_, func, insert, select, update
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from catalog import Catalog, aware, chunks, supervision_pushes, supervision_receipts, utcnow
from contracts.identifiers import is_valid_citizen_id
from evidence.canonical import canonical_json
from evidence.log import KIND_SUPERVISION, Committed, TransparencyLog, append_committed_many, log_entry
from evidence.note import NoteVerifier, open_note
from lake.parquet import ParquetLake
from onceonly.errors import TerminalError, TransientError, VerificationFailed
from onceonly.privacy import mask_citizen_id, scrub_digits, scrub_text

if TYPE_CHECKING:
    from onceonly.settings import Settings

PUSH_SCHEMA = "onceonly-supervision-push/1"
#: The namespace of the supervisor's secrets (``connectors.secrets``): ONCEONLY_SECRET_SUPERVISION_<NAME>.
SECRET_NAMESPACE = "supervision"
#: Approvals recorded per transaction (and log append) while pushing: a run that dies loses at
#: most this many answers, which the next run gets again (the same cases) from the supervisor.
RECORD_EVERY = 200

PENDING, UNREAD, WAITING_FEEDBACK, ANSWERED = "待推送", "已推送未签收", "已签收待反馈", "已反馈"


class SupervisorUnavailable(TransientError):
    """The supervisor did not answer (timeouts, refused connections, 5xx) after the retries."""


class SupervisorRefused(TerminalError):
    """The supervisor answered 4xx: retrying the same request will not help. ``case_id``: the
    case the refusal names, if any (a 409: the approval has a case, with another body)."""

    def __init__(self, status: int, message: str, case_id: str | None = None) -> None:
        self.status = status
        self.case_id = case_id
        super().__init__(message)


class _Retryable(Exception):
    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


# --------------------------------------------------------------------------------- the client


@dataclass(frozen=True)
class PushAnswer:
    case_id: str
    duplicate: bool  # the supervisor had opened this case already (a retry)
    amended: bool = False  # an amendment recorded on the approval's case (a corrected approval)


#: The receipt kinds a supervisor may send; anything else is refused (and skipped).
RECEIPT_KINDS = ("read", "feedback")
#: The longest receipt id / case id / approval id kept (the catalog's columns).
MAX_ID = 64
MAX_APPROVAL_ID = 40
#: The 监管结果 kept in the catalog and shown (scrubbed, cut to this many characters); the log
#: carries only its SHA-256 — remote free text is never published.
MAX_RESULT = 2000


@dataclass(frozen=True)
class Receipt:
    seq: int
    receipt_id: str
    approval_id: str
    case_id: str
    kind: str  # read | feedback
    at: dt.datetime
    result: str | None  # as sent (the catalog keeps it scrubbed and cut, the log its digest)
    problem: str | None = None  # why it is refused (then skipped, never kept)

    @property
    def result_sha256(self) -> str | None:
        return None if self.result is None else hashlib.sha256(self.result.encode("utf-8")).hexdigest()


def clean_result(result: str | None) -> str | None:
    """The supervisor's free text as kept and shown: citizen IDs and long digit runs masked,
    control characters dropped, at most :data:`MAX_RESULT` characters."""
    if result is None:
        return None
    text = "".join(ch if ch.isprintable() or ch in "\n\t" else " " for ch in result[: MAX_RESULT * 2])
    text = scrub_digits(text)
    return text if len(text) <= MAX_RESULT else text[: MAX_RESULT - 1] + "…"


def _receipt(raw: Any) -> Receipt:
    """One receipt as the supervisor sent it; ``problem`` says why it is refused, if it is
    (the sequence number must be readable: without it the page itself is not understood)."""
    seq = int(raw["seq"])

    def field_(name: str) -> str:
        value = raw.get(name)
        return "" if value is None else str(value)

    receipt_id, approval_id, case_id, kind = (
        field_(n) for n in ("receipt_id", "approval_id", "case_id", "kind")
    )
    result = raw.get("result")
    problem = None
    at = dt.datetime.min.replace(tzinfo=dt.UTC)
    if kind not in RECEIPT_KINDS:
        problem = f"kind {kind[:20]!r} is none of {', '.join(RECEIPT_KINDS)}"
    elif not 0 < len(receipt_id) <= MAX_ID or not 0 < len(case_id) <= MAX_ID:
        problem = f"receipt id and case id must be 1-{MAX_ID} characters"
    elif not 0 < len(approval_id) <= MAX_APPROVAL_ID:
        problem = f"approval id must be 1-{MAX_APPROVAL_ID} characters"
    elif result is not None and not isinstance(result, str):
        problem = "result is not text"
    else:
        try:
            at = _instant(str(raw["at"]))
        except (KeyError, ValueError):
            problem = "its time is not an ISO 8601 instant"
    return Receipt(seq, receipt_id, approval_id, case_id, kind, at, result, problem)


class SupervisorClient:
    """The supervising department's endpoint over HTTP (httpx), retrying transient failures."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        attempts: int = 3,
        backoff_seconds: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self._token = token
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def secret_values(self) -> set[str]:
        """What no message may carry (the token), for the flow's scrubber."""
        return {self._token}

    def __enter__(self) -> SupervisorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def push(self, approval_id: str, note: str) -> PushAnswer:
        """Send one signed approval; the supervisor's case (the same one for every retry)."""
        body = self._request(
            "POST",
            "/approvals",
            content=note.encode("utf-8"),
            headers={"Idempotency-Key": approval_id, "Content-Type": "text/plain; charset=utf-8"},
        )
        return self._answer(body)

    def amend(self, approval_id: str, note: str) -> PushAnswer:
        """Send a corrected approval (``PUT /approvals/{id}``): recorded on the approval's case
        (the same case id); sending the same body again is a duplicate, not a second amendment."""
        body = self._request(
            "PUT",
            f"/approvals/{quote(approval_id, safe='')}",
            content=note.encode("utf-8"),
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )
        return self._answer(body)

    def _answer(self, body: Any) -> PushAnswer:
        try:
            case_id = str(body["case_id"])
        except (KeyError, TypeError):
            raise SupervisorRefused(200, f"{self.base_url}: the answer to a push names no case") from None
        if not 0 < len(case_id) <= MAX_ID:
            raise SupervisorRefused(
                200, f"{self.base_url}: the case id answered is not 1-{MAX_ID} characters"
            )
        return PushAnswer(case_id, bool(body.get("duplicate", False)), bool(body.get("amended", False)))

    def receipts(self, after: int, limit: int = 500) -> list[Receipt]:
        """The receipts after ``after`` (the supervisor's sequence), as it sends them; one that
        is not valid (an unknown kind, an overlong id, no time) comes with its ``problem``."""
        body = self._request("GET", "/receipts", params={"after": after, "limit": limit})
        try:
            return [_receipt(r) for r in body["receipts"]]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SupervisorRefused(200, f"{self.base_url}: receipts not understood ({exc})") from None

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff_seconds, max=30),
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )
        try:
            return retrying(self._once, method, path, **kwargs)
        except _Retryable as exc:
            raise SupervisorUnavailable(
                f"the supervisor at {self.base_url}: {exc.cause} (gave up after {self.attempts} attempts)"
            ) from None

    def _once(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise _Retryable(f"no answer within {self._http.timeout.read} s") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"unreachable ({type(exc).__name__})") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise _Retryable(f"answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400:
            said = body.get("error") if isinstance(body, dict) else None
            case = body.get("case_id") if isinstance(body, dict) else None
            case_id = str(case) if case is not None and 0 < len(str(case)) <= MAX_ID else None
            raise SupervisorRefused(
                response.status_code,
                f"the supervisor at {self.base_url} refused {method} {path}: HTTP {response.status_code}"
                + (f" {scrub_digits(str(said))[:300]}" if said else ""),
                case_id,
            )
        return body


def _instant(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def supervisor_client(
    settings: Settings, *, transport: httpx.BaseTransport | None = None
) -> SupervisorClient:
    """The client of ``settings.supervision_url``, its token resolved now by the secret's NAME
    (``settings.supervision_token_secret``: an environment variable or a Prefect Secret block)."""
    from connectors.secrets import ChainedSecrets, EnvironmentSecrets, PrefectSecrets

    token = ChainedSecrets(EnvironmentSecrets(), PrefectSecrets()).resolve(
        settings.supervision_token_secret, connector=SECRET_NAMESPACE
    )
    return SupervisorClient(
        settings.supervision_url,
        token,
        timeout=settings.supervision_timeout_seconds,
        attempts=settings.supervision_attempts,
        backoff_seconds=min(settings.retry_wait_seconds, 2.0),
        transport=transport,
    )


# ------------------------------------------------------------------------- the push document


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def push_document(approval: Mapping[str, Any], district: str) -> dict[str, Any]:
    """What is pushed for one approval (a landed row): no time of sending, the representative's
    ID number masked — so every retry signs the same text."""
    return {
        "schema": PUSH_SCHEMA,
        "district": district,
        "approval_id": _text(approval["approval_id"]),
        "licence_no": _text(approval.get("licence_no")),
        "matter": _text(approval.get("matter")),
        "decision_type": _text(approval.get("decision_type")),
        "applicant": {
            "name": _text(approval.get("applicant_name")),
            "uscc": _text(approval.get("applicant_uscc")),
        },
        "legal_representative": {
            "name": _text(approval.get("legal_representative")),
            "id": mask_citizen_id(_text(approval.get("legal_representative_id"))),
        },
        "business_address": _text(approval.get("business_address")),
        "township": _text(approval.get("township_code")),
        "business_form": _text(approval.get("business_form")),
        "business_items": _text(approval.get("business_items")),
        "decided_on": _text(approval.get("decided_on")),
        "valid_from": _text(approval.get("valid_from")),
        "valid_to": _text(approval.get("valid_to")),
        "approving_authority": _text(approval.get("approving_authority")),
        "supervising_authority": _text(approval.get("supervising_authority")),
    }


def push_digest(document: Mapping[str, Any]) -> str:
    """The SHA-256 of the pushed text (the note's body line): what ``body_sha256`` records, so a
    corrected approval (another digest) is pushed again, as an amendment."""
    return hashlib.sha256(canonical_json(dict(document))).hexdigest()


def sign_push(log: TransparencyLog, document: Mapping[str, Any]) -> str:
    """The push as a signed note by the district's log key (RFC 8785 JSON, one line)."""
    return log.key.sign_note(canonical_json(dict(document)).decode("utf-8") + "\n")


def open_push(note: str, verifiers: Sequence[NoteVerifier]) -> dict[str, Any]:
    """The pushed approval, if ``note`` is signed by one of the district's keys; else
    :class:`VerificationFailed` (what a supervisor runs on each push)."""
    text = open_note(note, list(verifiers))
    try:
        body = json.loads(text)
    except ValueError:
        raise VerificationFailed("the push is not JSON") from None
    if not isinstance(body, dict) or body.get("schema") != PUSH_SCHEMA:
        raise VerificationFailed(f"not a {PUSH_SCHEMA} push")
    return body


def landed_approvals(lake: ParquetLake, dataset: str) -> list[dict[str, Any]]:
    """The newest landed row of each approval id, in id order."""
    table = lake.read_accepted(dataset)
    if table.num_rows == 0 or "approval_id" not in table.column_names:
        return []
    newest: dict[str, dict[str, Any]] = {}
    for row in table.to_pylist():
        key = str(row["approval_id"])
        seen = newest.get(key)
        if seen is None or str(row.get("updated_at")) >= str(seen.get("updated_at")):
            newest[key] = row
    return [newest[k] for k in sorted(newest)]


# --------------------------------------------------------------------------------- pushing


@dataclass
class PushReport:
    landed: int = 0
    pushed: list[str] = field(default_factory=list)  # approval ids accepted this run
    duplicates: int = 0  # of them, cases the supervisor had opened already (an earlier try)
    refused: dict[str, str] = field(default_factory=dict)  # approval id -> why
    unavailable: str | None = None  # why the pushing stopped early
    pending: int = 0  # landed and still not accepted (or a correction not delivered) after this run
    amended: int = 0  # of the pushed, corrections recorded on their case as amendments
    receipts_applied: int = 0  # receipts held (sent before the push was recorded) applied now

    @property
    def ok(self) -> bool:
        return self.unavailable is None and not self.refused


def push_pending(
    catalog: Catalog,
    lake: ParquetLake,
    log: TransparencyLog,
    client: SupervisorClient,
    *,
    dataset: str,
    district: str,
    record_every: int = RECORD_EVERY,
) -> PushReport:
    """Push every landed approval the supervisor has not accepted yet (see the module docstring)."""
    approvals = landed_approvals(lake, dataset)
    report = PushReport(landed=len(approvals))
    with catalog.read() as conn:
        accepted = {
            r.approval_id: r.body_sha256
            for r in conn.execute(
                select(supervision_pushes.c.approval_id, supervision_pushes.c.body_sha256).where(
                    supervision_pushes.c.pushed_at.is_not(None)
                )
            )
        }
    # Pending: never accepted, or accepted with another body (the approval was corrected since).
    todo, documents = [], {}
    for approval in approvals:
        approval_id = str(approval["approval_id"])
        document = push_document(approval, district)
        if accepted.get(approval_id, "") != push_digest(document):
            todo.append(approval)
            documents[approval_id] = document
    done: list[tuple[Mapping[str, Any], str, PushAnswer]] = []
    failed: dict[str, str] = {}
    cases: dict[str, str] = {}  # approval id -> the case a refusal named
    for approval in todo:
        approval_id = str(approval["approval_id"])
        document = documents[approval_id]
        note = sign_push(log, document)
        try:
            if approval_id in accepted:  # a corrected approval: an amendment to its case
                answer = client.amend(approval_id, note)
            else:
                try:
                    answer = client.push(approval_id, note)
                except SupervisorRefused as exc:
                    if exc.status != 409:
                        raise
                    # A case is open with another body: an earlier push whose answer was lost
                    # (a timeout) before the approval was corrected. Send the correction to it.
                    if exc.case_id:
                        cases[approval_id] = exc.case_id
                    answer = client.amend(approval_id, note)
        except SupervisorUnavailable as exc:
            failed[approval_id] = report.unavailable = str(exc)
            break
        except SupervisorRefused as exc:
            failed[approval_id] = str(exc)
            if exc.case_id:
                cases[approval_id] = exc.case_id
            if exc.status in (401, 403):
                report.unavailable = str(exc)
                break
            report.refused[approval_id] = str(exc)
            continue
        done.append((approval, push_digest(document), answer))
        if len(done) >= record_every:
            _record_pushed(catalog, log, done, report)
            done = []
    if done:
        _record_pushed(catalog, log, done, report)
    if failed:
        _record_failures(catalog, {str(a["approval_id"]): a for a in todo}, failed, client.attempts, cases)
    report.pending = len(todo) - len(report.pushed)
    return report


def _row(approval: Mapping[str, Any]) -> dict[str, Any]:
    decided = approval.get("decided_on")
    if isinstance(decided, str):
        decided = dt.date.fromisoformat(decided)
    return {
        "supervisor": str(approval.get("supervising_authority") or ""),
        "licence_no": _text(approval.get("licence_no")),
        "applicant_uscc": _text(approval.get("applicant_uscc")),
        "applicant_name": _text(approval.get("applicant_name")),
        "township": _text(approval.get("township_code")),
        "decided_on": decided,
    }


def _existing(conn: Any, ids: Iterable[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for part in chunks(list(ids)):
        for r in conn.execute(
            select(supervision_pushes.c.approval_id, supervision_pushes.c.attempts).where(
                supervision_pushes.c.approval_id.in_(part)
            )
        ):
            found[r.approval_id] = int(r.attempts)
    return found


def _record_pushed(
    catalog: Catalog,
    log: TransparencyLog,
    done: Sequence[tuple[Mapping[str, Any], str, PushAnswer]],
    report: PushReport,
) -> None:
    """The pushes the supervisor accepted: their rows and log entries, and the receipts held for
    them (sent before the push was recorded here), in one transaction."""
    now = utcnow()
    items = []
    with catalog.read() as conn:
        before = _previous(conn, (str(a["approval_id"]) for a, _, _ in done))
    for approval, digest, answer in done:
        approval_id = str(approval["approval_id"])
        rep_id = _text(approval.get("legal_representative_id"))
        previous = before.get(approval_id)
        amended = previous is not None and previous != digest
        document = {
            "event": "amended" if amended else "pushed",
            "approval_id": approval_id,
            "licence_no": _text(approval.get("licence_no")),
            "matter": _text(approval.get("matter")),
            # No credit code (a 个体工商户's names a person) nor name: the body's digest commits to them.
            "township": _text(approval.get("township_code")),
            "supervisor": _text(approval.get("supervising_authority")),
            "case_id": answer.case_id,
            "body_sha256": digest,
            **({"amends_body_sha256": previous} if amended else {}),
            "at": now.isoformat(timespec="seconds"),
        }
        subject = rep_id.upper() if rep_id and is_valid_citizen_id(rep_id.upper()) else None
        items.append(Committed(KIND_SUPERVISION, approval_id, document, subject))
    with catalog.begin() as conn:
        appended = append_committed_many(conn, log, items)
        existing = _existing(conn, (str(a["approval_id"]) for a, _, _ in done))
        for at, (approval, digest, answer) in enumerate(done):
            approval_id = str(approval["approval_id"])
            values = {
                **_row(approval),
                "body_sha256": digest,
                "case_id": answer.case_id,
                "leaf_index": appended.first_index + at,
                "last_error": None,
            }
            if approval_id in existing:
                conn.execute(
                    update(supervision_pushes)
                    .where(supervision_pushes.c.approval_id == approval_id)
                    # An amendment keeps the first acceptance (overdue counts from it).
                    .values(
                        attempts=existing[approval_id] + 1,
                        pushed_at=func.coalesce(supervision_pushes.c.pushed_at, now),
                        **values,
                    )
                )
            else:
                conn.execute(
                    insert(supervision_pushes).values(
                        approval_id=approval_id, attempts=1, first_tried_at=now, pushed_at=now, **values
                    )
                )
        report.receipts_applied += _apply_held(conn, log, [str(a["approval_id"]) for a, _, _ in done])
    for _, _, answer in done:
        report.duplicates += answer.duplicate
        report.amended += answer.amended
    report.pushed += [str(a["approval_id"]) for a, _, _ in done]


def _previous(conn: Any, ids: Iterable[str]) -> dict[str, str | None]:
    """The body last accepted of each of ``ids`` that was accepted."""
    found: dict[str, str | None] = {}
    p = supervision_pushes.c
    for part in chunks(list(ids)):
        for r in conn.execute(
            select(p.approval_id, p.body_sha256).where(p.approval_id.in_(part), p.pushed_at.is_not(None))
        ):
            found[r.approval_id] = r.body_sha256
    return found


def _record_failures(
    catalog: Catalog,
    approvals: Mapping[str, Mapping[str, Any]],
    failed: Mapping[str, str],
    attempts: int,
    cases: Mapping[str, str],
) -> None:
    now = utcnow()
    with catalog.begin() as conn:
        existing = _existing(conn, failed)
        for approval_id, error in failed.items():
            named = {"case_id": cases[approval_id]} if approval_id in cases else {}
            if approval_id in existing:
                conn.execute(
                    update(supervision_pushes)
                    .where(supervision_pushes.c.approval_id == approval_id)
                    .values(attempts=existing[approval_id] + attempts, last_error=error[:2000], **named)
                )
            else:
                conn.execute(
                    insert(supervision_pushes).values(
                        approval_id=approval_id,
                        attempts=attempts,
                        last_error=error[:2000],
                        first_tried_at=now,
                        **named,
                        **_row(approvals[approval_id]),
                    )
                )


# -------------------------------------------------------------------------------- receipts


@dataclass
class ReceiptReport:
    received: int = 0  # receipts the supervisor sent (repeats included)
    new: int = 0  # kept this run, each once
    repeated: int = 0  # sent again (already kept, or twice in one answer)
    reads: int = 0  # approvals read for the first time
    feedback: int = 0  # approvals answered for the first time
    unknown: int = 0  # kept but held: their approval's push is not recorded here (yet)
    refused: list[str] = field(default_factory=list)  # receipts not valid, skipped: why


def pull_receipts(
    catalog: Catalog, log: TransparencyLog, client: SupervisorClient, *, page: int = 500
) -> ReceiptReport:
    """Pull the receipts since the last one kept; keep each new one once, and log and apply it
    once its approval's push is recorded (held until then: see :func:`_apply_held`)."""
    report = ReceiptReport()
    with catalog.read() as conn:
        after = int(conn.execute(select(func.coalesce(func.max(supervision_receipts.c.seq), 0))).scalar_one())
    while True:
        batch = client.receipts(after, page)
        report.received += len(batch)
        newest = max((r.seq for r in batch), default=after)
        valid = []
        for r in batch:
            if r.problem is None:
                valid.append(r)
            else:
                report.refused.append(
                    f"监管回执 seq {r.seq} 不合规，已拒收跳过: {r.problem}"
                    f"（receipt id {scrub_digits(r.receipt_id[:MAX_ID])!r}）"
                )
        _keep(catalog, log, valid, report)
        if len(batch) < page or newest <= after:
            return report
        after = newest


def _keep(catalog: Catalog, log: TransparencyLog, batch: Sequence[Receipt], report: ReceiptReport) -> None:
    """Store each receipt not kept yet (whether or not its push is recorded here), then log and
    apply those whose push is recorded; the others wait, held, for :func:`_record_pushed`."""
    unique: dict[str, Receipt] = {}
    for receipt in batch:
        unique.setdefault(receipt.receipt_id, receipt)
    report.repeated += len(batch) - len(unique)
    if not unique:
        return
    now = utcnow()
    with catalog.begin() as conn:
        seen: set[str] = set()
        for part in chunks(list(unique)):
            seen |= {
                r.receipt_id
                for r in conn.execute(
                    select(supervision_receipts.c.receipt_id).where(
                        supervision_receipts.c.receipt_id.in_(part)
                    )
                )
            }
        fresh = sorted((r for r in unique.values() if r.receipt_id not in seen), key=lambda r: r.seq)
        report.repeated += len(unique) - len(fresh)
        if not fresh:
            return
        conn.execute(
            insert(supervision_receipts),
            [
                {
                    "receipt_id": r.receipt_id,
                    "seq": r.seq,
                    "approval_id": r.approval_id,
                    "case_id": r.case_id,
                    "kind": r.kind,
                    "at": r.at,
                    "result": clean_result(r.result),
                    "result_sha256": r.result_sha256,
                    "received_at": now,
                    "leaf_index": None,
                }
                for r in fresh
            ],
        )
        applied = _apply_held(conn, log, sorted({r.approval_id for r in fresh}), report)
        report.new += len(fresh)
        report.unknown += max(0, len(fresh) - applied)


def _apply_held(
    conn: Any, log: TransparencyLog, approval_ids: Sequence[str], report: ReceiptReport | None = None
) -> int:
    """Log and apply the kept receipts not applied yet (``leaf_index`` NULL) of those of
    ``approval_ids`` whose push is recorded: the approval's ``read_at`` / ``feedback_at`` set by
    the first. The log entry carries the result's SHA-256, never its text. How many applied."""
    p, r_ = supervision_pushes.c, supervision_receipts.c
    states: dict[str, dict[str, Any]] = {}
    held: list[Any] = []
    for part in chunks(list(approval_ids)):
        for row in conn.execute(
            select(p.approval_id, p.read_at, p.feedback_at).where(
                and_(p.approval_id.in_(part), p.pushed_at.is_not(None))
            )
        ):
            states[row.approval_id] = {"read_at": row.read_at, "feedback_at": row.feedback_at}
    for part in chunks(sorted(states)):
        held += conn.execute(
            select(r_.receipt_id, r_.seq, r_.approval_id, r_.case_id, r_.kind, r_.at, r_.result,
                   r_.result_sha256)
            .where(and_(r_.approval_id.in_(part), r_.leaf_index.is_(None)))
        ).all()  # fmt: skip
    if not held:
        return 0
    held.sort(key=lambda r: r.seq)
    entries = [
        log_entry(
            KIND_SUPERVISION,
            r.approval_id,
            {
                "event": r.kind,
                "approval_id": r.approval_id,
                "case_id": r.case_id,
                "receipt_id": r.receipt_id,
                "result_sha256": r.result_sha256,
                "at": aware(r.at).astimezone(dt.UTC).isoformat(timespec="seconds"),
            },
        )
        for r in held
    ]
    appended = log.append(conn, entries)
    for at, r in enumerate(held):
        conn.execute(
            update(supervision_receipts)
            .where(r_.receipt_id == r.receipt_id)
            .values(leaf_index=appended.first_index + at)
        )
        state = states[r.approval_id]
        changes: dict[str, Any] = {}
        if state["read_at"] is None:  # a feedback is a read too
            changes["read_at"] = state["read_at"] = r.at
            if report is not None:
                report.reads += 1
        if r.kind == "feedback" and state["feedback_at"] is None:
            changes.update(feedback_at=r.at, feedback_result=r.result)
            state["feedback_at"] = r.at
            if report is not None:
                report.feedback += 1
        if changes:
            conn.execute(update(supervision_pushes).where(p.approval_id == r.approval_id).values(**changes))
    return len(held)


# --------------------------------------------------------------------------------- overdue


@dataclass(frozen=True)
class Overdue:
    approval_id: str
    kind: str  # unread | no-feedback
    supervisor: str
    case_id: str | None
    applicant_name: str | None
    township: str | None
    pushed_at: dt.datetime
    waited: dt.timedelta

    def describe(self) -> str:
        hours = self.waited.total_seconds() / 3600
        what = "未签收" if self.kind == "unread" else "未反馈监管结果"
        since = f"{hours:.0f} 小时" if hours < 48 else f"{hours / 24:.0f} 天"
        return (
            f"许可决定 {self.approval_id}（{self.applicant_name or '—'}）推送 {self.supervisor} 已 {since}，"
            f"{what}（案件 {self.case_id or '—'}）"
        )


def find_overdue(
    catalog: Catalog,
    *,
    unread_after: dt.timedelta,
    feedback_after: dt.timedelta,
    now: dt.datetime | None = None,
) -> list[Overdue]:
    """Approvals pushed and unread after ``unread_after``, or without feedback after
    ``feedback_after``, not announced yet (an approval may be both)."""
    now = now or utcnow()
    p = supervision_pushes.c
    found = []
    with catalog.read() as conn:
        rows = conn.execute(
            select(
                p.approval_id,
                p.supervisor,
                p.case_id,
                p.applicant_name,
                p.township,
                p.pushed_at,
                p.read_at,
                p.feedback_at,
                p.unread_alerted_at,
                p.feedback_alerted_at,
            )
            .where(p.pushed_at.is_not(None))
            # Times compared below, in Python: aware UTC on every database.
            .where(
                (p.read_at.is_(None) & p.unread_alerted_at.is_(None))
                | (p.feedback_at.is_(None) & p.feedback_alerted_at.is_(None))
            )
            .order_by(p.pushed_at, p.approval_id)
        ).all()
    for r in rows:
        pushed = aware(r.pushed_at)
        common = dict(
            approval_id=r.approval_id, supervisor=r.supervisor, case_id=r.case_id,
            applicant_name=r.applicant_name, township=r.township, pushed_at=pushed, waited=now - pushed,
        )  # fmt: skip
        if r.read_at is None and r.unread_alerted_at is None and now - pushed >= unread_after:
            found.append(Overdue(kind="unread", **common))
        if r.feedback_at is None and r.feedback_alerted_at is None and now - pushed >= feedback_after:
            found.append(Overdue(kind="no-feedback", **common))
    return found


def mark_alerted(catalog: Catalog, overdue: Iterable[Overdue], now: dt.datetime | None = None) -> None:
    """Record that ``overdue`` were announced: :func:`find_overdue` lists them no more."""
    now = now or utcnow()
    column = {"unread": "unread_alerted_at", "no-feedback": "feedback_alerted_at"}
    with catalog.begin() as conn:
        for o in overdue:
            conn.execute(
                update(supervision_pushes)
                .where(supervision_pushes.c.approval_id == o.approval_id)
                .values({column[o.kind]: now})
            )


# ---------------------------------------------------------------------------------- status


@dataclass(frozen=True)
class ApprovalState:
    approval_id: str
    applicant_name: str | None
    applicant_uscc: str | None
    township: str | None
    state: str  # PENDING | UNREAD | WAITING_FEEDBACK | ANSWERED
    pushed_at: dt.datetime | None
    case_id: str | None
    result: str | None
    overdue: str  # "" | 逾期未签收 | 逾期未反馈
    last_error: str | None


@dataclass
class SupervisionStatus:
    landed: int
    approvals: list[ApprovalState]

    def count(self, state: str) -> int:
        return sum(1 for a in self.approvals if a.state == state)

    @property
    def overdue(self) -> int:
        return sum(1 for a in self.approvals if a.overdue)

    def summary(self) -> str:
        return (
            f"{self.landed} 项许可决定：{self.count(PENDING)} 项待推送，"
            f"{self.count(UNREAD)} 项已推送未签收，{self.count(WAITING_FEEDBACK)} 项已签收待反馈，"
            f"{self.count(ANSWERED)} 项已反馈；逾期 {self.overdue} 项"
        )

    def table(self, limit: int = 200) -> list[dict[str, Any]]:
        """The approvals not yet answered first, in Chinese, for an artifact (no personal data)."""
        order = {PENDING: 0, UNREAD: 1, WAITING_FEEDBACK: 2, ANSWERED: 3}
        ranked = sorted(self.approvals, key=lambda a: (not a.overdue, order[a.state], a.approval_id))
        return [
            {
                "许可决定编号": a.approval_id,
                "经营者": a.applicant_name or "",
                "统一社会信用代码": a.applicant_uscc or "",
                "镇街": a.township or "",
                "状态": a.state,
                "逾期": a.overdue,
                "推送时间（UTC）": f"{a.pushed_at:%Y-%m-%d %H:%M}" if a.pushed_at else "",
                "监管案件号": a.case_id or "",
                "监管结果": clean_result(a.result) or "",
                "推送错误": scrub_text(a.last_error or "")[:200],
            }
            for a in ranked[:limit]
        ]


def supervision_status(
    catalog: Catalog,
    lake: ParquetLake,
    *,
    dataset: str,
    unread_after: dt.timedelta,
    feedback_after: dt.timedelta,
    now: dt.datetime | None = None,
) -> SupervisionStatus:
    """Where each landed approval stands (pushed, read, answered, overdue)."""
    now = now or utcnow()
    approvals = landed_approvals(lake, dataset)
    with catalog.read() as conn:
        rows = {r.approval_id: r for r in conn.execute(select(supervision_pushes))}
    states = []
    for approval in approvals:
        approval_id = str(approval["approval_id"])
        r = rows.get(approval_id)
        pushed = aware(r.pushed_at) if r is not None and r.pushed_at is not None else None
        if pushed is None:
            state, overdue = PENDING, ""
        else:
            assert r is not None
            waited = now - pushed
            state = ANSWERED if r.feedback_at else WAITING_FEEDBACK if r.read_at else UNREAD
            overdue = (
                "逾期未签收"
                if state == UNREAD and waited >= unread_after
                else "逾期未反馈"
                if state != ANSWERED and waited >= feedback_after
                else ""
            )
        states.append(
            ApprovalState(
                approval_id=approval_id,
                applicant_name=_text(approval.get("applicant_name")),
                applicant_uscc=_text(approval.get("applicant_uscc")),
                township=_text(approval.get("township_code")),
                state=state,
                pushed_at=pushed,
                case_id=r.case_id if r is not None else None,
                result=clean_result(r.feedback_result) if r is not None else None,
                overdue=overdue,
                last_error=r.last_error if r is not None and pushed is None else None,
            )
        )
    return SupervisionStatus(len(approvals), states)


__all__ = [
    "ANSWERED",
    "MAX_RESULT",
    "PENDING",
    "PUSH_SCHEMA",
    "RECEIPT_KINDS",
    "RECORD_EVERY",
    "SECRET_NAMESPACE",
    "UNREAD",
    "WAITING_FEEDBACK",
    "ApprovalState",
    "Overdue",
    "PushAnswer",
    "PushReport",
    "Receipt",
    "ReceiptReport",
    "SupervisionStatus",
    "SupervisorClient",
    "SupervisorRefused",
    "SupervisorUnavailable",
    "clean_result",
    "find_overdue",
    "landed_approvals",
    "mark_alerted",
    "open_push",
    "pull_receipts",
    "push_digest",
    "push_document",
    "push_pending",
    "sign_push",
    "supervision_status",
    "supervisor_client",
]
