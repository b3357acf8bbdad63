"""The demo supervising department (市场监督管理局) of 审管联动: it receives pushed approvals.

Example::

    with SupervisorEndpoint(token, verify=lambda note: open_note(note, verifiers)) as sup:
        httpx.post(sup.base_url + "/approvals", content=note,
                   headers={"Authorization": f"Bearer {token}", "Idempotency-Key": approval_id})
        sup.read(approval_id)                       # a clerk opens the case: a read receipt
        sup.feedback(approval_id, "现场检查符合要求")  # and records the 监管结果
        httpx.get(sup.base_url + "/receipts", params={"after": 0}, headers=...)

A real HTTP server on a socket (standard library, a thread per request), like the demo
licence API. ``POST /api/v1/approvals`` takes a signed note (the district's push, see
``sharing.supervision``): the signature is checked with ``verify`` (the district's verifier
keys; a forged or altered push is refused, 422), and the ``Idempotency-Key`` header must be
the approval's id. One approval opens one case, whatever the number of retries: the same
approval again answers 200 with the case it opened (201 the first time); the same approval with
another body answers 409, naming the case. ``PUT /api/v1/approvals/{id}`` is a corrected
approval: an amendment recorded on the approval's case (the same case id; the case's body
becomes the corrected one; the same amendment again is a duplicate), or a new case if there is
none. ``GET
/api/v1/receipts?after=SEQ`` lists the read receipts (签收) and feedback (监管结果) since
``SEQ``, in order. Cases are kept in a SQLite file (or in memory), so a supervisor stopped
and started again still knows them.

It can be told to misbehave (:class:`SupervisorFaults`): answer slowly (after doing the work:
the client times out, retries, and must not open a second case), answer 5xx, send every
receipt twice and ignore ``after``; "down" is :meth:`stop` (and :meth:`start` again on the
same port). With ``read_after`` / ``feedback_after`` (seconds) it reads and answers cases on
its own, as the demo does — except one case in ``idle_one_in`` that it leaves unread, and as
many again that it reads and never answers, so overdue approvals show up.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from departments.serving import DemoServer

logger = logging.getLogger(__name__)

SUPERVISOR_NAME = "天津市武清区市场监督管理局"
API_PREFIX = "/api/v1"
DEFAULT_PORT = 18931
DEMO_RESULTS = ("已纳入日常监督检查计划", "现场检查符合要求", "现场检查发现问题，已责令整改")
MAX_BODY = 64 * 1024

_DDL = """
CREATE TABLE IF NOT EXISTS cases (
    case_id TEXT PRIMARY KEY,
    approval_id TEXT NOT NULL UNIQUE,
    body_sha256 TEXT NOT NULL,
    body TEXT NOT NULL,
    received_at TEXT NOT NULL,
    deliveries INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS amendments (
    case_id TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    body TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (case_id, body_sha256)
);
CREATE TABLE IF NOT EXISTS receipts (
    seq INTEGER PRIMARY KEY,
    receipt_id TEXT NOT NULL UNIQUE,
    approval_id TEXT NOT NULL,
    case_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    at TEXT NOT NULL,
    result TEXT,
    UNIQUE (approval_id, kind)
);
"""


def demo_supervision_token(seed: int) -> str:
    """The demo supervisor's bearer token for ``seed`` (deterministic; a demo value, not a secret)."""
    return "demo-" + hashlib.sha256(f"onceonly-demo-supervision:{seed}".encode()).hexdigest()[:32]


@dataclass
class SupervisorFaults:
    """How a :class:`SupervisorEndpoint` misbehaves, for tests of the pushing side.

    ``delay_seconds``: every answer waits this long after the work is done (``slow_times``
    answers, then prompt; 0 = always). ``status`` with ``fail_times``: the next requests answer
    that HTTP status and do nothing (0 = always). ``duplicate_receipts``: every receipt is
    listed twice and ``after`` is ignored (everything is sent again).
    """

    delay_seconds: float = 0.0
    slow_times: int = 0
    status: int | None = None
    fail_times: int = 0
    duplicate_receipts: bool = False
    _slowed: int = field(default=0, init=False, repr=False, compare=False)
    _failed: int = field(default=0, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def failure(self) -> int | None:
        """The status this request answers instead of working, or None."""
        if self.status is None:
            return None
        with self._lock:
            if self.fail_times and self._failed >= self.fail_times:
                return None
            self._failed += 1
        return self.status

    def delay(self) -> float:
        """How long this answer waits."""
        if not self.delay_seconds:
            return 0.0
        with self._lock:
            if self.slow_times and self._slowed >= self.slow_times:
                return 0.0
            self._slowed += 1
        return self.delay_seconds


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Conflict(_Refused):
    """409: the approval has a case (named), with another body."""

    def __init__(self, case_id: str, message: str) -> None:
        super().__init__(409, message)
        self.case_id = case_id


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class SupervisorEndpoint(DemoServer):
    """The supervising department's endpoint on a real socket in a background thread."""

    name = "supervisor"
    server_version = "scjg-supervision-demo/1"

    def __init__(
        self,
        token: str,
        verify: Callable[[str], str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        db_path: Path | None = None,
        faults: SupervisorFaults | None = None,
        read_after: float | None = None,
        feedback_after: float | None = None,
        idle_one_in: int = 10,
        clock: Callable[[], dt.datetime] = _now,
    ) -> None:
        super().__init__(host, port)
        self.faults = faults or SupervisorFaults()
        self.read_after, self.feedback_after, self.idle_one_in = read_after, feedback_after, idle_one_in
        self._verify = verify
        self._expected = f"Bearer {token}".encode()
        self._clock = clock
        self._lock = threading.Lock()
        if db_path is not None:
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(db_path or ":memory:"), check_same_thread=False)
        self._db.executescript(_DDL)
        self.requests = 0
        self.refused_signatures = 0

    # -- running ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}{API_PREFIX}"

    def close(self) -> None:
        self.stop()
        self._db.close()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what the clerks do -----------------------------------------------------------------

    def cases(self) -> list[dict[str, Any]]:
        """Every case opened, in order: case id, approval id, received, deliveries (pushes seen),
        the body (the newest amendment's, if amended) and the number of amendments."""
        with self._lock:
            rows = self._db.execute(
                "SELECT case_id, approval_id, received_at, deliveries, body, "
                "(SELECT COUNT(*) FROM amendments m WHERE m.case_id = cases.case_id) "
                "FROM cases ORDER BY case_id"
            ).fetchall()
        return [
            {"case_id": c, "approval_id": a, "received_at": r, "deliveries": d, "body": json.loads(b),
             "amendments": n}
            for c, a, r, d, b, n in rows
        ]  # fmt: skip

    def read(self, approval_id: str, at: dt.datetime | None = None) -> bool:
        """A clerk opens the case of ``approval_id``: its read receipt (once). False: no such case."""
        return self._receipt(approval_id, "read", None, at or self._clock())

    def feedback(self, approval_id: str, result: str, at: dt.datetime | None = None) -> bool:
        """The case's 监管结果 (read first if it was not). False: no such case."""
        when = at or self._clock()
        self._receipt(approval_id, "read", None, when)
        return self._receipt(approval_id, "feedback", result, when)

    def _receipt(self, approval_id: str, kind: str, result: str | None, at: dt.datetime) -> bool:
        with self._lock, self._db:
            found = self._db.execute(
                "SELECT case_id FROM cases WHERE approval_id = ?", (approval_id,)
            ).fetchone()
            if found is None:
                return False
            (seq,) = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM receipts").fetchone()
            self._db.execute(
                "INSERT OR IGNORE INTO receipts (seq, receipt_id, approval_id, case_id, kind, at, result) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (seq, f"R{seq:08d}", approval_id, found[0], kind, at.isoformat(timespec="seconds"), result),
            )
        return True

    def _ripen(self) -> None:
        """The demo's clerks: read and answer the cases that have waited long enough."""
        if self.read_after is None and self.feedback_after is None:
            return
        now = self._clock()
        for case in self.cases():
            approval = case["approval_id"]
            waited = (now - dt.datetime.fromisoformat(case["received_at"])).total_seconds()
            lot = int(hashlib.sha256(approval.encode()).hexdigest()[:8], 16) % max(1, self.idle_one_in)
            if self.read_after is not None and waited >= self.read_after and lot != 0:
                self.read(approval, now)
            if self.feedback_after is not None and waited >= self.feedback_after and lot not in (0, 1):
                digest = hashlib.sha256(approval.encode()).digest()
                self.feedback(approval, DEMO_RESULTS[digest[0] % len(DEMO_RESULTS)], now)

    # -- HTTP ------------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        with self._lock:
            self.requests += 1
        url = urlsplit(request.path)
        path = url.path.rstrip("/")
        try:
            if path == "/healthz":
                self._send(request, 200, {"status": "ok"})
                return
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, self._expected):
                raise _Refused(401, "令牌无效或缺失")
            failure = self.faults.failure()
            if failure is not None:
                self._send(request, failure, {"error": f"injected fault: HTTP {failure}"})
                return
            if method == "POST" and path == API_PREFIX + "/approvals":
                status, body = self._accept(request)
            elif method == "PUT" and path.startswith(API_PREFIX + "/approvals/"):
                status, body = self._accept(request, amend=unquote(path[len(API_PREFIX + "/approvals/") :]))
            elif method == "GET" and path == API_PREFIX + "/receipts":
                status, body = self._receipts(parse_qs(url.query))
            else:
                raise _Refused(404, "not found")
            delay = self.faults.delay()
            if delay:
                time.sleep(delay)  # the work is done: a client that gave up will send it again
            self._send(request, status, body)
        except _Conflict as exc:
            self._send(request, 409, {"error": str(exc), "case_id": exc.case_id})
        except _Refused as exc:
            self._send(request, exc.status, {"error": str(exc)})
        except ConnectionError:
            raise
        except Exception:
            logger.exception("supervisor: unexpected error")
            self._send(request, 500, {"error": "internal error"})

    def _accept(
        self, request: BaseHTTPRequestHandler, amend: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        length = int(request.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            raise _Refused(413 if length else 400, "推送内容为空或过大")
        note = request.rfile.read(length).decode("utf-8", errors="replace")
        key = request.headers.get("Idempotency-Key", "")
        try:
            text = self._verify(note)
        except Exception as exc:
            with self._lock:
                self.refused_signatures += 1
            raise _Refused(422, f"签名无效，拒收: {exc}") from None
        try:
            body = json.loads(text)
            approval_id = str(body["approval_id"])
        except (ValueError, KeyError, TypeError):
            raise _Refused(422, "推送内容不是许可决定") from None
        if amend is not None and amend != approval_id:
            raise _Refused(400, "路径中的编号须为许可决定编号")
        if amend is None and key != approval_id:
            raise _Refused(400, "Idempotency-Key 须为许可决定编号")
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        now = self._clock().isoformat(timespec="seconds")
        with self._lock, self._db:
            found = self._db.execute(
                "SELECT case_id, body_sha256, received_at FROM cases WHERE approval_id = ?", (approval_id,)
            ).fetchone()
            if found is not None and found[1] != digest and amend is not None:
                self._db.execute(
                    "INSERT OR IGNORE INTO amendments (case_id, body_sha256, body, received_at) "
                    "VALUES (?, ?, ?, ?)",
                    (found[0], digest, text, now),
                )
                self._db.execute(
                    "UPDATE cases SET body_sha256 = ?, body = ?, deliveries = deliveries + 1 "
                    "WHERE approval_id = ?",
                    (digest, text, approval_id),
                )
                return 200, {"case_id": found[0], "approval_id": approval_id, "duplicate": False,
                             "amended": True, "received_at": found[2]}  # fmt: skip
            if found is not None:
                if found[1] != digest:
                    raise _Conflict(
                        found[0], f"许可决定 {approval_id} 已立案（案件 {found[0]}），内容与此次推送不同"
                    )
                self._db.execute(
                    "UPDATE cases SET deliveries = deliveries + 1 WHERE approval_id = ?", (approval_id,)
                )
                return 200, {"case_id": found[0], "approval_id": approval_id, "duplicate": True,
                             "received_at": found[2]}  # fmt: skip
            (count,) = self._db.execute("SELECT COUNT(*) FROM cases").fetchone()
            case_id = f"JG{count + 1:08d}"
            self._db.execute(
                "INSERT INTO cases (case_id, approval_id, body_sha256, body, received_at, deliveries) "
                "VALUES (?, ?, ?, ?, ?, 1)",
                (case_id, approval_id, digest, text, now),
            )
        return 201, {"case_id": case_id, "approval_id": approval_id, "duplicate": False, "received_at": now}

    def _receipts(self, params: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        try:
            after = int(params.get("after", ["0"])[0])
            limit = min(1000, max(1, int(params.get("limit", ["500"])[0])))
        except ValueError:
            raise _Refused(400, "after 与 limit 须为整数") from None
        self._ripen()
        if self.faults.duplicate_receipts:
            after = 0
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, receipt_id, approval_id, case_id, kind, at, result FROM receipts "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
        receipts = [
            {"seq": s, "receipt_id": r, "approval_id": a, "case_id": c, "kind": k, "at": at, "result": res}
            for s, r, a, c, k, at, res in rows
        ]
        if self.faults.duplicate_receipts:
            receipts = [r for r in receipts for _ in range(2)]
        return 200, {"receipts": receipts, "supervisor": SUPERVISOR_NAME}

    def _send(self, request: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        with contextlib.suppress(ConnectionError):  # a client that timed out has hung up
            request.wfile.write(payload)


__all__ = [
    "API_PREFIX",
    "DEFAULT_PORT",
    "DEMO_RESULTS",
    "SUPERVISOR_NAME",
    "SupervisorEndpoint",
    "SupervisorFaults",
    "demo_supervision_token",
]
