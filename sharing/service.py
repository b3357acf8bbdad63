"""The counter's service (``onceonly serve``): skip-check over HTTP for the district's stations.

Example::

    app = create_app(Settings())            # FastAPI; uvicorn runs it (cli/counter.py)
    # POST /api/skip-check  Authorization: Bearer oos_...
    #   {"subject_id": "120114...", "matter": "newborn",
    #    "purpose": "办理新生儿落户", "case_number": "WQ-2026-0001"}

Deny by default: every route but ``/healthz`` and the OpenAPI document needs a station's
credential (``sharing.stations``). A station asks only for the matters it is scoped to, and
only about subjects of its own township — a subject who holds a certificate of the station's
township; anyone else is 跨域通办 and needs the citizen's consent (403 需本人授权). Every answer
records its uses in the transparency log with the station, the purpose (用证事由) and the case
number (受理编号); a request refused — no purpose, no case number, a matter out of scope,
another township, an unknown matter, an invalid ID — is recorded too (kind ``refusal``), with
the subject committed, never named, and the answer names nothing of another township.

Answers are in the clerk's words (``sharing.skipcheck``: 可免交, 未找到证照, …), each skippable
material with its certificate identifier and the link to its verifiable bundle.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import logging
import pathlib
import threading
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import Depends, Header, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import and_, bindparam, select

from catalog import Catalog, Prepared, certificates
from contracts.identifiers import is_valid_citizen_id, is_valid_uscc
from evidence.log import Appended, Committed
from evidence.view import LogView
from onceonly.errors import ConfigurationError, VerificationFailed
from onceonly.privacy import mask_citizen_id, scrub_digits, scrub_text
from onceonly.settings import Settings
from sharing.citizens import Citizen
from sharing.logwriter import Logged, LogWriter
from sharing.matters import Asked
from sharing.skipcheck import VERDICTS
from sharing.stations import Station, authenticate
from sharing.uses import OpeningsCheck, uses_of

_logger = logging.getLogger("onceonly.serve")
POOL_SIZE = 42
CONSENT_NEEDED = "需本人授权"
UNKNOWN_MATTER = "unknown"  # what a refusal logs for a matter code not in the catalogue
# The counter page's own script and styles only; no other origin, no framing.
_PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
BUNDLE_MATTER = "certificate-bundle"  # the matter a bundle download is logged under
# Leaves the view may fold on the event loop before an answer (~3.5 µs each); a bigger growth
# (a day's batch of certificates: ~3.5 s per million) is followed in the thread pool first,
# so that the loop — and every other request on it — does not stall.
FOLLOW_ON_LOOP = 2_000
# The townships of a subject's certificates, by the holder's index: a person holds a few. (Asked
# as "holder and township", SQLite without statistics walked the township's index instead:
# 3 ms an answer at 1M certificates, and growing with the township.)
_TOWNSHIPS_OF = Prepared(
    select(certificates.c.township).where(certificates.c.holder_id == bindparam("holder"))
)


class SkipCheckRequest(BaseModel):
    """What the clerk types at the counter."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    subject_id: str = Field(max_length=64, description="申请人身份证号码或统一社会信用代码")
    matter: str = Field(max_length=64, description="事项或一件事编码（GET /api/matters）")
    purpose: str | None = Field(None, max_length=200, description="用证事由（必填）")
    case_number: str | None = Field(None, max_length=64, description="受理编号（必填）")
    consent_code: str | None = Field(
        None, max_length=20, description="申请人本人授权码（跨域通办：申请人不属本镇街时必填）"
    )
    child_id: str | None = Field(
        None, max_length=64, description="子女身份证号码（事项需子女材料且申请人有多名子女时必填）"
    )


class MaterialAnswerBody(BaseModel):
    """One material of an answer (documented: the route sends ``SkipCheckAnswer.to_json`` as is)."""

    material: str = Field(description="材料名称")
    skippable: bool = Field(description="可免交")
    verdict: str = Field(description="核验结果", json_schema_extra={"enum": list(VERDICTS)})
    reason: str = Field(description="说明")
    certificate_id: str | None = Field(description="证照标识（GB/T 36904）")
    holder: str = Field(description="谁的证照：applicant、spouse、child、parent、legal_representative")
    holder_shown: str | None = Field(description="亲属身份证号码（脱敏）")
    needed_by: list[str] = Field(description="一件事中需要该材料的事项")
    status: str | None = Field(description="签名状态列表中的证照状态（以透明日志为准）")
    valid_from: str | None = Field(description="有效期起（以透明日志为准）")
    valid_to: str | None = Field(description="有效期止（以透明日志为准；空为长期）")
    bundle_url: str | None = Field(None, description="可验证证照包（仅可免交时）")


class SkipCheckAnswerBody(BaseModel):
    """The answer to a skip-check, with its verification slip (核验单)."""

    matter: str
    matter_name: str
    bundle: bool = Field(description="一件事")
    subject: str = Field(description="申请人（脱敏）")
    materials: list[MaterialAnswerBody]
    checkpoint_size: int = Field(description="核验依据的透明日志检查点")
    station_name: str
    purpose: str
    case_number: str
    slip: str = Field(description="核验单：签名的 note（onceonly verify-slip 离线核验）")
    slip_sha256: str
    slip_qr_url: str


class ConsentRequest(BaseModel):
    """A citizen's consent for 跨域通办: which township's station may ask, for what, how long."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    township: str = Field(max_length=12, description="办理地镇街代码（12 位）")
    matter: str = Field(max_length=64, description="事项或一件事编码")
    purpose: str = Field(min_length=1, max_length=200, description="用证事由")
    minutes: int = Field(30, ge=1, le=60, description="有效期（分钟，至多 60）")


def _scrubbed(request: SkipCheckRequest) -> SkipCheckRequest:
    """The request with ID-looking numbers masked in its free text (purpose, case number): they
    are logged, answered and signed, and the log is published."""
    return request.model_copy(
        update={
            "purpose": scrub_digits(request.purpose) if request.purpose else request.purpose,
            "case_number": scrub_digits(request.case_number) if request.case_number else request.case_number,
        }
    )


def _bearer(authorization: str | None) -> str | None:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


class Refused(Exception):
    """A request refused with ``status`` and a message for the clerk (recorded in the log)."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(message)
        self.status, self.message, self.reason = status, message, reason


@dataclass(frozen=True)
class _Append:
    """What a step of an answer asks the log writer to append (and ``before``: to commit with it)."""

    items: Sequence[Committed]
    before: Callable[[Any], object] | None


def _advance(
    steps: Generator[_Append, Logged, dict[str, Any]], logged: Logged | None, error: Exception | None
) -> tuple[bool, Any]:
    """Resume ``steps`` with where its entries went (or the error appending them raised):
    ``(False, the next _Append)``, or ``(True, the answer)`` once they finish. (A StopIteration
    cannot cross a thread pool's future; a pair can.)"""
    try:
        if error is not None:
            return False, steps.throw(error)
        return False, steps.send(logged)  # type: ignore[arg-type]
    except StopIteration as stop:
        return True, stop.value


async def _maybe(value: Any) -> Any:
    """``value``, awaited if it is awaitable (a step run in the thread pool) — else as it is."""
    return await value if inspect.isawaitable(value) else value


def open_log(settings: Settings) -> tuple[Catalog, Any]:
    """The catalog and the transparency log of ``settings``, as the log writer's appender
    process opens them (``sharing.logwriter``)."""
    from evidence.keys import open_key_store
    from evidence.log import TransparencyLog
    from evidence.merkle import tree_hash

    catalog = Catalog.connect(settings.catalog_url, create=False)
    key = open_key_store(settings).load(settings.log_origin)
    return catalog, TransparencyLog(key, settings.log_origin, hasher=tree_hash(settings.log_hash))


class Counter:
    """The service's state: the catalog, the catalogue, the log and its keys (loaded once)."""

    def __init__(self, settings: Settings, *, appender: bool = False) -> None:
        """``appender``: the log writer's transactions in a process of their own on a SQLite
        file (``sharing.logwriter``; ``onceonly serve`` with one process): the appending
        thread, waiting on the loop for the interpreter lock at every query, held every answer."""
        from contracts.model import certificate_datasets
        from evidence.keys import log_verifiers, open_key_store
        from evidence.log import TransparencyLog
        from evidence.merkle import tree_hash
        from sharing.matters import load_matters

        self.settings = settings
        # As many connections as threads may ask at once: the thread pool's 40 (the routes that
        # are plain functions; every answer on a PostgreSQL or MariaDB catalog), the loop, the writer.
        self.catalog = Catalog.connect(settings.catalog_url, create=False, pool_size=POOL_SIZE)
        self.issued_by = certificate_datasets(settings.contracts_dir)
        self.catalogue = load_matters(settings.matters_file, known_types=self.issued_by)
        self._asked: dict[str, Asked] = {}  # catalogue.asked, by code (an unknown one raises, kept nowhere)
        self._openings = OpeningsCheck()  # who-used's check of the openings, at most once a minute
        self.verifiers = log_verifiers(settings)
        key = open_key_store(settings).load(settings.log_origin)
        self.log = TransparencyLog(key, settings.log_origin, hasher=tree_hash(settings.log_hash))
        self._write = threading.Lock()  # a consent granted: one such append at a time here
        # The log verified once and followed (answers read certificates through it), and the one
        # thread that appends every request's entries, many requests to a transaction.
        self.view = LogView(self.verifiers, hasher=self.log.hasher)
        try:
            with self.catalog.read() as conn:
                self.view.refresh(conn)
        except VerificationFailed as exc:  # answered 证照核验未通过 until the log is put right
            _logger.error("cannot answer from the transparency log: %s", scrub_text(str(exc)))
        # Answered on the event loop itself where a query is a local file's (skip_check_async).
        self.inline = self.catalog.engine.dialect.name == "sqlite"
        database = self.catalog.engine.url.database if self.inline else None
        if database and (database == ":memory:" or database.startswith("file:")):
            database = None  # no lock file beside it (SQLite's own locking only)
        self.writer = LogWriter(
            self.catalog,
            self.log,
            committed=self._followed,
            committed_busy=self.view.busy,  # a big growth folded in the pool: not waited for on the loop
            # Several processes answering (`onceonly serve --workers N`): their writers take turns.
            turns=pathlib.Path(f"{database}.writer-lock") if database else None,
            appender=partial(open_log, settings) if appender and database else None,
        )
        self._loop_thread: int | None = None  # the loop that answers inline (skip_check_async)

    def _read(self) -> contextlib.AbstractContextManager[Any]:
        """A read transaction: on the loop answering inline, on the connection it keeps."""
        if self.inline and threading.get_ident() == self._loop_thread:
            return self.catalog.read_kept()
        return self.catalog.read()

    def _follow_log(self) -> None:
        try:
            with self.catalog.read() as conn:
                self.view.refresh(conn)
        except VerificationFailed:
            pass  # the answer that follows says so (503), as from any other refresh

    def _followed(self, appended: Appended) -> None:
        """The writer committed ``appended``: the view follows it from the entries written."""
        first = appended.tree_size - len(appended.entries)
        self.view.follow_own(first, appended.entries, appended.checkpoint)

    def close(self) -> None:
        self.writer.close()
        self.catalog.dispose()

    def station(self, authorization: str | None) -> Station:
        with self._read() as conn:
            return self._station_in(conn, authorization)

    @staticmethod
    def _station_in(conn: Any, authorization: str | None) -> Station:
        """The station whose credential ``authorization`` carries (401 without one)."""
        station = authenticate(conn, _bearer(authorization))
        if station is None:
            raise Refused(
                401, "未授权：请使用本站的服务凭证（Authorization: Bearer …）", "no valid credential"
            )
        return station

    def skip_check(self, station: Station, request: SkipCheckRequest) -> dict[str, Any]:
        """The answer to ``request`` from ``station``, its uses logged (refused: :class:`Refused`,
        the refusal logged)."""
        return self._drive(self._skip_check_steps(station, request))

    def skip_check_for(self, authorization: str | None, request: SkipCheckRequest) -> bytes:
        """:meth:`skip_check` for the credential in ``authorization`` (401 without one), as the
        JSON the route sends."""
        return _json_bytes(self.skip_check(self.station(authorization), request))

    async def skip_check_async(self, authorization: str | None, request: SkipCheckRequest) -> bytes:
        """:meth:`skip_check_for` on the event loop: on a SQLite catalog (a local file: each
        query a few microseconds) the loop answers itself and waits for the log writer without
        holding a thread; the loop, the writer and nothing else share the GIL. Threads parked on
        the writer's commit and waking to take the GIL back cost more than the answer (a convoy
        of 40 pool threads). Another database is asked from the thread pool, as a network round
        trip must not stall the loop."""
        from starlette.concurrency import run_in_threadpool

        if self.inline:
            self._loop_thread = threading.get_ident()
            advance: Callable[..., Any] = _advance
            self.writer.take_ready()  # the view at the log's head before this answer reads it
            # One read transaction for the credential, the log's newest checkpoint and the
            # answer up to its first append: each transaction begun after the appender's commit
            # re-reads the pages it touches (SQLite drops a reader's page cache when the file
            # changed), and the newest checkpoint is asked once.
            with self._read() as conn:
                newest = self.view.newest(conn)
                station = self._station_in(conn, authorization)
                behind = self.view.behind_of(newest)
                if behind <= FOLLOW_ON_LOOP:
                    steps = self._skip_check_steps(station, request, reading=(conn, newest))
                    first = advance(steps, None, None)
            if behind > FOLLOW_ON_LOOP:  # a batch issued meanwhile: folded off the loop
                await run_in_threadpool(self._follow_log)
                steps = self._skip_check_steps(station, request)
                first = advance(steps, None, None)
        else:
            station = await run_in_threadpool(self.station, authorization)
            advance = partial(run_in_threadpool, _advance)  # type: ignore[call-arg]
            steps = self._skip_check_steps(station, request)
            first = await run_in_threadpool(_advance, steps, None, None)
        done, out = first
        while not done:
            try:
                logged = await self.writer.append_async(out.items, before=out.before)
            except Exception as exc:  # handed to the steps, which decide
                done, out = await _maybe(advance(steps, None, exc))
            else:
                done, out = await _maybe(advance(steps, logged, None))
        return _json_bytes(out)

    def _drive(self, steps: Generator[_Append, Logged, dict[str, Any]]) -> dict[str, Any]:
        """Run ``steps``, appending what each asks for (blocking this thread) and handing it back."""
        done, out = _advance(steps, None, None)
        while not done:
            try:
                logged = self.writer.append(out.items, before=out.before)
            except Exception as exc:  # handed to the steps, which decide
                done, out = _advance(steps, None, exc)
            else:
                done, out = _advance(steps, logged, None)
        return out

    def _skip_check_steps(
        self,
        station: Station,
        request: SkipCheckRequest,
        reading: tuple[Any, tuple[int, str] | None] | None = None,
    ) -> Generator[_Append, Logged, dict[str, Any]]:
        """The skip-check, as steps that yield what must be logged (:class:`_Append`) and get
        back where it went: the same answer whether the caller blocks on the log writer or
        awaits it. ``reading``: the caller's read transaction, open until the first step yields,
        and the newest checkpoint it saw (``LogView.newest``): the answer is read in it."""
        from sharing.citizens import ConsentRefused, use_consent
        from sharing.skipcheck import skip_check
        from sharing.slip import build_slip, slip_digest

        subject = request.subject_id.strip().upper()
        request = _scrubbed(request)
        try:
            asked = self._asked.get(request.matter) or self._asked.setdefault(
                request.matter, self.catalogue.asked(request.matter)
            )  # the catalogue is frozen: each matter's materials made once
        except ConfigurationError:
            refused = Refused(404, "未知事项（见 GET /api/matters）", "unknown matter")
            known = is_valid_citizen_id(subject) or is_valid_uscc(subject)
            yield self._refusal(station, UNKNOWN_MATTER, refused, subject if known else None, request)
            raise refused from None
        valid = is_valid_citizen_id(subject) if asked.subject == "person" else is_valid_uscc(subject)
        committed = subject if valid else None
        try:
            if not valid:
                kind = "身份证号码" if asked.subject == "person" else "统一社会信用代码"
                raise Refused(
                    400, f"{kind}格式或校验位不正确，请核对后重新输入", "invalid subject identifier"
                )
            if not request.purpose:
                raise Refused(422, "请填写用证事由", "no purpose")
            if not request.case_number:
                raise Refused(422, "请填写受理编号", "no case number")
            if not station.may_ask(asked.code):
                raise Refused(
                    403, f"本站未获授权办理该事项：{asked.name}", "matter out of the station's scope"
                )
            with contextlib.nullcontext(reading[0]) if reading else self._read() as conn:
                in_township = self._in_township(conn, subject, station.township)
                if not in_township and not request.consent_code:
                    raise Refused(
                        403,
                        f"{CONSENT_NEEDED}：申请人不属本镇街，跨域通办须经申请人本人授权（请申请人提供授权码）",
                        "subject of another township",
                    )
                answer = skip_check(
                    conn,
                    asked,
                    subject,
                    self.issued_by,
                    township=station.township,
                    district=self.settings.district_code,
                    verifiers=self.verifiers,
                    relatives=self.catalogue.relatives,
                    station=station.station_id,
                    purpose=request.purpose,
                    case_number=request.case_number,
                    may_see=lambda relative: self._in_township(conn, relative, station.township),
                    held=self.view.reader(conn, reading[1] if reading else None),
                    named={"child": request.child_id.strip().upper()} if request.child_id else None,
                )

            def spend_consent(conn: Any) -> None:  # 跨域通办: the citizen's consent, with the uses
                use_consent(
                    conn,
                    str(request.consent_code),
                    subject_id=subject,
                    township=station.township,
                    matter=asked.code,
                    purpose=str(request.purpose),
                    station_id=station.station_id,
                )

            blocked = answer.blocked  # 办事堵点: committed with the uses, by the writer

            def before(conn: Any) -> None:
                if not in_township:
                    spend_consent(conn)
                if blocked is not None:
                    blocked(conn)

            try:
                logged = yield _Append(answer.uses, None if in_township and blocked is None else before)
            except ConsentRefused as exc:
                raise Refused(403, f"{CONSENT_NEEDED}：{exc.message}", exc.reason) from None
            # The uses are durable now: the data was used, whatever happens to the slip below (a
            # use logged for an answer that then failed errs on the side of the citizen knowing).
            answer = replace(answer, use_leaves=logged.indices, uses=(), blocked=None)
            if logged.checkpoint:  # signed here: the view need not check its signature again
                self.view.vouch(logged.checkpoint)
            slip_of = partial(
                build_slip,
                log=self.log,
                station=station,
                answer=answer,
                purpose=str(request.purpose),
                case_number=str(request.case_number),
                subject_shown=mask_citizen_id(subject) or "",
                view=self.view,
                entries=dict(zip(logged.indices, logged.entries, strict=False)),
            )
            try:
                head = self.view.head
                if head[0] >= logged.tree_size and len(logged.entries) == len(logged.indices):
                    # The writer's own append, followed by the view as it committed: the slip is
                    # proven from what the view holds, nothing read back.
                    slip = slip_of(None, head=head)
                else:  # another process appended between: the view reads the log to its head
                    with self._read() as conn:
                        self.view.refresh(conn)
                        head = self.view.head
                        slip = slip_of(conn, head=head)
            except VerificationFailed:
                raise Refused(
                    503,
                    "透明日志核验未通过，暂停出具核验单：请数据局运行 onceonly log verify",
                    "the log does not verify",
                ) from None
        except Refused as refused:
            yield self._refusal(station, asked.code, refused, committed, request)
            raise
        body = answer.to_json()
        body["subject"] = mask_citizen_id(subject)
        body["checkpoint_size"] = head[0]  # the checkpoint the slip was proven against
        body["station_name"] = station.name
        body["purpose"], body["case_number"] = request.purpose, request.case_number
        body["slip"] = slip  # 核验单: a signed note; `onceonly verify-slip` checks it offline
        body["slip_sha256"] = slip_digest(slip)
        # The QR code printed on it: GET /api/slip-qr (drawn when printed, not with every answer)
        body["slip_qr_url"] = (
            f"/api/slip-qr?{urlencode({'case_number': request.case_number, 'sha256': body['slip_sha256']})}"
        )
        for material in body["materials"]:
            if material["skippable"]:
                material["bundle_url"] = f"/api/certificates/{material['certificate_id']}/bundle"
        return body

    def refuse_invalid(self, authorization: str | None, body: Any) -> None:
        """Log a skip-check request the schema refused, if a station sent it (the subject committed
        when it is a valid ID; the matter only when it is a code of the catalogue); Refused(401)
        if no station did (a request without a credential learns nothing of the schema)."""
        station = self.station(authorization)
        fields = body if isinstance(body, dict) else {}
        subject = str(fields.get("subject_id") or "")[:64].strip().upper()
        known = is_valid_citizen_id(subject) or is_valid_uscc(subject)
        matter = str(fields.get("matter") or "")
        codes = {m.code for m in self.catalogue.matters} | {b.code for b in self.catalogue.bundles}
        request = SkipCheckRequest.model_construct(
            subject_id="-", matter=matter, purpose=None, case_number=None
        )
        refused = Refused(422, "", "request refused by the schema")
        self.refuse(
            station,
            matter if matter in codes else UNKNOWN_MATTER,
            refused,
            subject if known else None,
            request,
        )

    def refuse(
        self, station: Station, matter: str, refused: Refused, subject: str | None, request: SkipCheckRequest
    ) -> None:
        wanted = self._refusal(station, matter, refused, subject, request)
        self.writer.append(wanted.items)

    @staticmethod
    def _refusal(
        station: Station, matter: str, refused: Refused, subject: str | None, request: SkipCheckRequest
    ) -> _Append:
        from evidence.log import refusal_entry

        return _Append(
            (
                refusal_entry(
                    station=station.station_id,
                    township=station.township,
                    matter=matter[:64],
                    reason=refused.reason,
                    subject=subject,
                    purpose=request.purpose or None,
                    case_number=request.case_number or None,
                ),
            ),
            None,
        )

    def bundle(
        self, station: Station, cert_id: str, purpose: str | None, case_number: str | None
    ) -> dict[str, Any]:
        """The certificate's verifiable bundle (``evidence.bundle.export_bundle``), a use of its
        holder's data: only for a certificate this station's skip-check answered 可免交 for this
        case within the last hour (so under its township, scope and any consent), once."""
        from evidence.bundle import export_bundle
        from evidence.keys import bundle_vkeys
        from evidence.log import use_entry

        request = _scrubbed(
            SkipCheckRequest(
                subject_id="-", matter=BUNDLE_MATTER, purpose=purpose or None, case_number=case_number or None
            )
        )
        with self.catalog.read() as conn:
            row = conn.execute(
                select(certificates.c.holder_id).where(certificates.c.cert_id == cert_id)
            ).first()
            holder = str(row.holder_id) if row is not None else None
            answered, downloaded = self._uses_for_case(conn, cert_id, station, request.case_number)
        try:
            if row is None:
                raise Refused(404, "未找到该证照", "unknown certificate")
            if not request.purpose:
                raise Refused(422, "请填写用证事由", "no purpose")
            if not request.case_number:
                raise Refused(422, "请填写受理编号", "no case number")
            if not answered:
                raise Refused(
                    403,
                    "该证照未在本站本受理编号的核验结果中（先核验，一小时内下载）",
                    "certificate not answered for this station and case",
                )
            if downloaded:
                raise Refused(403, "该证照已为本受理编号下载过", "bundle already downloaded for this case")
        except Refused as refused:
            self.refuse(station, BUNDLE_MATTER, refused, holder, request)
            raise
        with self.catalog.read() as conn:
            bundle, _ = export_bundle(conn, cert_id, bundle_vkeys(self.settings, conn))
        self.writer.append(
            [
                use_entry(
                    matter=BUNDLE_MATTER,
                    certificate_id=cert_id,
                    township=station.township,
                    subject=holder,
                    station=station.station_id,
                    purpose=request.purpose,
                    case_number=request.case_number,
                )
            ]
        )
        return bundle

    @staticmethod
    def _uses_for_case(
        conn: Any, cert_id: str, station: Station, case_number: str | None
    ) -> tuple[bool, bool]:
        """Whether this station's answer for ``case_number`` used the certificate within the hour,
        and whether its bundle was downloaded for that case already (from the log's use entries)."""
        import datetime as dt
        import json

        from catalog import log_leaves, utcnow

        since = utcnow() - dt.timedelta(hours=1)
        answered = downloaded = False
        rows = conn.execute(
            select(log_leaves.c.entry).where(and_(log_leaves.c.kind == "use", log_leaves.c.ref == cert_id))
        ).scalars()
        for entry in rows:
            use = json.loads(entry)
            if use.get("station") != station.station_id or use.get("case_number") != case_number:
                continue
            if use.get("matter") == BUNDLE_MATTER:
                downloaded = True
            elif dt.datetime.fromisoformat(str(use.get("used_at"))) >= since:
                answered = True
        return answered, downloaded

    def citizen(self, authorization: str | None) -> Citizen:
        from sharing.citizens import authenticate_citizen

        token = _bearer(authorization)
        with self.catalog.read() as conn:
            citizen = authenticate_citizen(conn, token)
        if citizen is None:
            raise Refused(
                401, "未授权：请使用本人的凭证（Authorization: Bearer …）", "no valid citizen credential"
            )
        return citizen

    def consent(self, citizen: Citizen, request: ConsentRequest) -> dict[str, Any]:
        from sharing.citizens import consent_json, grant_consent
        from sharing.skipcheck import check_township

        try:
            asked = self.catalogue.asked(request.matter)
            check_township(request.township, self.settings.district_code)
        except ConfigurationError:
            raise Refused(422, "事项或镇街代码不正确", "bad consent request") from None
        # The log writer's turn too: with `--workers N`, other processes' writers wait on it.
        with self._write, self.writer.turn(), self.catalog.begin() as conn:
            consent = grant_consent(
                conn,
                self.log,
                citizen,
                township=request.township,
                matter=asked.code,
                purpose=request.purpose,
                minutes=request.minutes,
                district=self.settings.district_code,
            )
        return consent_json(consent)

    def uses(self, citizen: Citizen) -> dict[str, Any]:
        with self.catalog.read() as conn:  # the service's own view: verified once, followed
            return uses_of(conn, citizen.subject_id, self.verifiers, self.view, self._openings).to_json()

    @staticmethod
    def _in_township(conn: Any, subject: str, township: str) -> bool:
        """Whether the subject holds a certificate registered in ``township`` (household or seat)."""
        return any(row.township == township for row in _TOWNSHIPS_OF.all(conn, holder=subject))

    def matters(self) -> dict[str, Any]:
        from sharing.matters import RELATION_NAMES

        return {
            "matters": [
                {
                    "code": m.code,
                    "name": m.name,
                    "department": m.department,
                    "subject": m.subject,
                    "materials": [
                        {
                            "name": x.name,
                            "holder": x.holder,
                            "holder_name": RELATION_NAMES[x.holder],
                            "certificate_types": list(x.certificate_types),
                            "note": x.note,
                            "reused": list(x.reused),
                        }
                        for x in m.materials
                    ],
                }
                for m in self.catalogue.matters
            ],
            "bundles": [
                {"code": b.code, "name": b.name, "matters": list(b.matters)} for b in self.catalogue.bundles
            ],
        }


_SKIP_CHECK = "/api/skip-check"
_JSON_HEADERS = (b"content-type", b"application/json")


def _refused_response(exc: Refused) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)


class _SkipCheckRoute:
    """``POST /api/skip-check`` answered in front of FastAPI's middleware and routing: a station's
    well-formed request (``Content-Type: application/json``, a body :class:`SkipCheckRequest`
    accepts) goes straight to :meth:`Counter.skip_check_async`, and its answer — or its refusal,
    as the ``Refused`` handler words it — is sent as is. Anything else (another content type, a
    body the model refuses, a client gone before its body arrived) goes on to the FastAPI route
    with the body read so far, which answers as it always did (422 with the fields that are
    wrong, the refusal logged). FastAPI's route stays the documented one (the OpenAPI document
    is unchanged); this skips its dependency solving, its content-type parsing, the standard
    library's JSON decoder and its response classes, ~a sixth of a served answer's CPU at the
    counter's rate. An exception it does not expect reaches uvicorn, which logs it and answers
    500, as FastAPI's own error layer would have. It stands in front of every middleware: one
    added to the app (CORS, a size limit) would not see a well-formed skip-check;
    :func:`create_app` adds none, and refuses to build the stack if one was."""

    def __init__(self, app: Any, counter: Counter) -> None:
        self.app, self.counter = app, counter

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != _SKIP_CHECK or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        authorization: str | None = None
        json_body = False
        seen: set[bytes] = set()
        for name, value in scope["headers"]:  # the first of each, as Starlette's headers.get
            if name in seen:
                continue
            seen.add(name)
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-type":
                json_body = value.split(b";", 1)[0].strip().lower() == b"application/json"
        messages: list[Any] = []
        chunks: list[bytes] = []
        complete = False
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client is gone: FastAPI's route meets it as it would have
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                complete = True
                break
        request = None
        if complete and json_body:
            try:
                request = SkipCheckRequest.model_validate_json(b"".join(chunks))
            except ValidationError:
                request = None  # FastAPI's route says what is wrong, and logs the refusal
        if request is None:
            await self.app(scope, _replay(messages, receive), send)
            return
        try:
            body = await self.counter.skip_check_async(authorization, request)
        except Refused as exc:
            await _refused_response(exc)(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode("ascii")), _JSON_HEADERS],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _replay(messages: list[Any], receive: Any) -> Any:
    """``receive`` for the app behind: the messages already read, then the client's own."""
    pending = list(messages)

    async def replayed() -> Any:
        return pending.pop(0) if pending else await receive()

    return replayed


def _json_bytes(body: Any) -> bytes:
    """The answer as Starlette's JSONResponse renders it (UTF-8, no ASCII escapes, compact), made
    where the answer was (not by FastAPI's encoder, which walks it again) — by orjson, the same
    bytes as ``json.dumps(ensure_ascii=False, separators=(",", ":"))`` at a tenth of its cost."""
    return orjson.dumps(body)


async def _bearer_header(  # async: FastAPI runs a plain function in the thread pool
    authorization: Annotated[str | None, Header(description="Bearer <station credential>")] = None,
) -> str | None:
    return authorization


def _station(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer <station credential>")] = None,
) -> Station:
    counter: Counter = request.app.state.counter
    return counter.station(authorization)


def _citizen(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer <citizen credential>")] = None,
) -> Citizen:
    counter: Counter = request.app.state.counter
    return counter.citizen(authorization)


# Module-level, so that FastAPI resolves the routes' (postponed) annotations.
StationDep = Annotated[Station, Depends(_station)]
CitizenDep = Annotated[Citizen, Depends(_citizen)]


def serve_app(*, appender: bool = False) -> Any:
    """The app ``onceonly serve`` runs (a process of its own; uvicorn's factory with
    ``--workers``; ``appender``: one process, its log writer's transactions in a process of their
    own): :func:`create_app`, then what was built to start — the verified log, the
    catalogue, the modules — put out of the collector's reach (``gc.freeze``): it lives as long
    as the process, and a full collection walking it stalls every waiting request (one took
    93 ms in a load run at 1M certificates). The p99 has other causes too: over 8 connections
    49-51 ms frozen against 62-69 ms not in one pair of runs, 47-71 ms frozen in the next two.
    Not for a process that builds many apps (tests): what is frozen is never collected."""
    app = create_app(counter=Counter(Settings(), appender=appender))
    gc.collect()
    gc.freeze()
    return app


def create_app(settings: Settings | None = None, counter: Counter | None = None) -> Any:
    """The service as a FastAPI app (``counter``: its state, built from ``settings`` if not given)."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from starlette.concurrency import run_in_threadpool

    counter = counter or Counter(settings or Settings())

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(counter.close)  # the log writer finishes what it was handed

    # FastAPI's own OpenTelemetry (from 0.150): off. Nothing here exports telemetry — request
    # paths hold certificate identifiers — and checking for providers cost ~2 % of a request.
    quiet = {"telemetry": {"tracing": False, "metrics": False, "logs": False, "auto_configure": False}}
    app = FastAPI(
        **(quiet if "telemetry" in inspect.signature(FastAPI).parameters else {}),  # type: ignore[arg-type]
        lifespan=lifespan,
        # The OpenAPI document is served (/openapi.json); the docs pages are not: they load
        # scripts from a CDN, which a government network neither reaches nor should trust.
        docs_url=None,
        redoc_url=None,
        title="OnceOnly 用证核验服务",
        version="1",
        description=(
            "For the district's township and village service stations: which proofs a citizen or "
            "business need not bring (可免交), from certificates the transparency log confirms. "
            "Every route but /healthz needs a station credential (Authorization: Bearer …)."
        ),
    )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer echoes the input (a citizen's ID): say where and what, not the value.
        problems = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        if request.url.path == "/api/skip-check":  # a refusal like the others, when a station asked
            # (401 without a credential: the route checks it only once the body is valid)
            await run_in_threadpool(counter.refuse_invalid, request.headers.get("authorization"), exc.body)
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> JSONResponse:
        return _refused_response(exc)

    app.state.counter = counter
    # A well-formed skip-check is answered before FastAPI's middleware (its error and telemetry
    # layers wrap every message sent: ~5 % of an answer's CPU); everything else goes on to them.
    build = app.build_middleware_stack

    def lean_in_front() -> Any:
        if app.user_middleware:  # it would not see a well-formed skip-check (_SkipCheckRoute)
            raise RuntimeError("the counter's app takes no middleware: the skip-check is answered before it")
        return _SkipCheckRoute(build(), counter)

    app.build_middleware_stack = lean_in_front  # type: ignore[method-assign]

    page = (pathlib.Path(__file__).with_name("counter.html")).read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    def counter_page() -> HTMLResponse:
        # The page holds no data: it asks the API with the credential the clerk types in.
        return HTMLResponse(
            page, headers={"Content-Security-Policy": _PAGE_POLICY, "X-Frame-Options": "DENY"}
        )

    @app.get("/healthz", summary="Liveness (no credential needed)")
    async def healthz() -> dict[str, str]:  # on the loop, as the skip-check: the floor's own path
        return {"status": "ok"}

    @app.get(
        "/api/matters",
        summary="The matters catalogue and 一件事 bundles",
        responses={401: {"description": "no valid station credential"}},
    )
    def matters(_: StationDep) -> dict[str, Any]:
        return counter.matters()

    @app.post(
        "/api/skip-check",
        summary="Which materials may this applicant skip for this matter or 一件事 bundle",
        responses={
            200: {
                "description": "the answer per material, the slip (核验单) and its digest",
                "model": SkipCheckAnswerBody,
            },
            400: {"description": "invalid ID number or credit code, or a body that is not JSON"},
            401: {"description": "no valid station credential"},
            403: {
                "description": "matter out of the station's scope, or a subject of another township "
                "(需本人授权)"
            },
            404: {"description": "unknown matter"},
            422: {"description": "missing purpose (用证事由) or case number (受理编号)"},
            503: {"description": "the transparency log does not verify: no slip is signed until it does"},
        },
    )
    async def skip_check(
        request: SkipCheckRequest, authorization: Annotated[str | None, Depends(_bearer_header)]
    ) -> Response:
        # Answered on the loop (a SQLite catalog), waiting for the log writer without a thread.
        body = await counter.skip_check_async(authorization, request)
        return Response(body, media_type="application/json")

    @app.get(
        "/api/slip-qr",
        summary="The QR code printed on a verification slip (SVG): its case number and SHA-256",
        response_class=Response,
        responses={
            200: {"content": {"image/svg+xml": {}}, "description": "the QR code"},
            401: {"description": "no valid station credential"},
            422: {"description": "a case number or digest out of bounds"},
        },
    )
    def slip_qr(
        _: StationDep,
        case_number: Annotated[str, Query(min_length=1, max_length=64, description="受理编号")],
        sha256: Annotated[str, Query(pattern="^[0-9a-f]{64}$", description="核验单的 SHA-256")],
    ) -> Response:
        from sharing.slip import qr_svg_of

        return Response(qr_svg_of(sha256, scrub_digits(case_number)), media_type="image/svg+xml")

    @app.post(
        "/api/citizen/consents",
        summary="A citizen grants one consent (跨域通办): a township, one matter, one purpose, once",
        responses={
            400: {"description": "a body that is not JSON"},
            401: {"description": "no valid citizen credential"},
            422: {"description": "unknown matter or township, or a field out of bounds"},
        },
    )
    def grant(request: ConsentRequest, citizen: CitizenDep) -> dict[str, Any]:
        return counter.consent(citizen, request)

    @app.get(
        "/api/citizen/uses",
        summary="Who used my data: every use and refused request, each with its inclusion proof",
        responses={401: {"description": "no valid citizen credential"}},
    )
    def my_uses(citizen: CitizenDep) -> dict[str, Any]:
        return counter.uses(citizen)

    @app.get(
        "/api/certificates/{cert_id}/bundle",
        summary="A certificate's verifiable bundle (checked offline by onceonly verify): a use",
        responses={
            401: {"description": "no valid station credential"},
            403: {"description": "a certificate of another township (需本人授权)"},
            404: {"description": "unknown certificate"},
            422: {"description": "missing purpose (用证事由) or case number (受理编号)"},
        },
    )
    def bundle(
        cert_id: Annotated[str, Path(max_length=120)],
        who: StationDep,
        purpose: Annotated[str | None, Query(max_length=200, description="用证事由（必填）")] = None,
        case_number: Annotated[str | None, Query(max_length=64, description="受理编号（必填）")] = None,
    ) -> JSONResponse:
        body = counter.bundle(who, cert_id, (purpose or "").strip(), (case_number or "").strip())
        name = cert_id.replace("/", "_")
        return JSONResponse(body, headers={"Content-Disposition": f'attachment; filename="{name}.json"'})

    return app


__all__ = [
    "BUNDLE_MATTER",
    "CONSENT_NEEDED",
    "ConsentRequest",
    "Counter",
    "MaterialAnswerBody",
    "Refused",
    "SkipCheckAnswerBody",
    "SkipCheckRequest",
    "create_app",
    "open_log",
    "serve_app",
]
