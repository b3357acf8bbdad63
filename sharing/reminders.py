"""证照到期提醒: certificates about to expire, reminded once to their township and their holder.

Example::

    policy = load_policy(settings.reminders_file, settings.contracts_dir)   # 营业执照: [60, 7]
    with catalog.read() as conn:
        plan = find_reminders(conn, policy, dt.date(2026, 12, 3))         # due, and to close
    with catalog.begin() as conn:
        sent = send_reminders(conn, log, plan)                            # logged, each once
    with catalog.read() as conn:
        written = write_reminder_files(conn, policy, reminders_dir(settings.home), plan.day)
    # var/reminders/2026-12-03/township=120114001000/到期提醒.xlsx   (600, folders 700)
    # var/reminders/2026-12-03/notices.jsonl                          (the outbox, 600)

**Which certificates.** A certificate 有效 whose ``valid_to`` falls within its type's window
(days before ``valid_to``, ``sharing/reminders.yaml``; a default and per-type windows, each type
checked against the data contracts: it must carry ``validToColumn``) on the run's day. A type
may have several windows (``[60, 7]``): the reminder due is the one of the smallest window the
certificate is within, unless a reminder of that window or a smaller one was sent already. When
the smaller window's reminder is sent, the larger one's still open is closed (已再次提醒,
logged): one open reminder per certificate lineage and ``valid_to``, one row in the lists.

**Once.** A reminder is one row of ``expiry_reminders`` keyed by the certificate's lineage (its
dataset, record and holder: every version of it), the ``valid_to`` it is about and the window.
A second run the same day, or the next day, finds the row and sends nothing; so does a new
version of the certificate that changed the address but not the validity.

**Renewal stops it.** A certificate of the same type, record and holder with a later
``valid_to`` (a renewed version, or another certificate) that is 有效: no reminder is sent for
the older one, and a reminder already sent is closed as 已换证, naming the certificate that
renewed it. A reminder whose ``valid_to`` passed without renewal is closed as 已到期; one
whose lineage has no 有效 certificate left (吊销, 注销, 撤销) as 已失效.

**Logged.** Every reminder sent and every one closed is a leaf of kind ``expiry-reminder`` in
the transparency log, appended in the transaction that records it: the certificate id, type,
window, township, day and notice — and the holder only as a salted commitment
(``evidence.commitment``; the salt kept privately in ``use_subjects``, so the holder finds and
proves their reminders among the uses of their data). Neither the ID number nor ``valid_to``
is in the log.

**Lists and notices.** Per township an XLSX list for its staff (Chinese headers, every text
cell through ``onceonly.cells``, the holder's identifier masked — ``110101********1234``, a
USCC too — and the name as the contract classifies it: a person's masked, a company's
readable), and per subject one notice per run listing their certificates, in the
``expiry_notices`` outbox and the day's ``notices.jsonl`` (each run also writes again the
``notices.jsonl`` of an earlier day whose undelivered notices it lacks: a run that died between
sending and writing loses none): what a messaging gateway (the
政务短信平台, the 津心办 message centre) takes, delivers to the subject's registered phone or
account by their ID number, and reports back (:func:`mark_delivered`). The outbox names the
recipient in clear — the gateway cannot deliver otherwise — and is private like the catalog
(600 in a 700 folder), never published.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.engine import Connection

from catalog import certificates, chunks, expiry_notices, expiry_reminders, utcnow
from evidence.certificate import STATUS_VALID
from evidence.log import KIND_REMINDER, Committed, TransparencyLog, append_committed_many
from onceonly.cells import spreadsheet_row
from onceonly.errors import ConfigurationError
from onceonly.files import private_dir, write_atomic
from onceonly.privacy import mask_citizen_id, mask_name, scrub_text

STATUS_OPEN = "待换证"
STATUS_RENEWED = "已换证"
STATUS_EXPIRED = "已到期"
STATUS_VOID = "已失效"
STATUS_RESENT = "已再次提醒"  # a larger window's reminder, closed when the smaller one is sent
STATUSES = (STATUS_OPEN, STATUS_RENEWED, STATUS_EXPIRED, STATUS_VOID, STATUS_RESENT)

LIST_NAME = "到期提醒.xlsx"
OUTBOX_NAME = "notices.jsonl"
MAX_WINDOW_DAYS = 3660  # ten years: a larger window is a typo
_PERSONAL_CLASSES = {"restricted", "confidential", "secret"}
NO_TOWNSHIP = "none"  # the folder of certificates whose township is unknown

LIST_HEADERS = (
    "序号",
    "镇街代码",
    "镇街",
    "证照类型",
    "证照标识",
    "持证主体",
    "证件号码",
    "有效期至",
    "剩余天数",
    "提醒窗口（天）",
    "提醒日期",
    "状态",
    "换证证照标识",
    "本次新增",
)


# --------------------------------------------------------------------------------------------
# The policy: windows per certificate type, validated against the contracts


@dataclass(frozen=True)
class TypeWindows:
    """One certificate type's reminder windows and how its holders are shown."""

    type_code: str
    type_name: str
    dataset: str
    windows: tuple[int, ...]  # ascending, days before valid_to
    mask_names: bool  # the contract classifies a holder's name as personal
    id_type: str  # 居民身份证, 统一社会信用代码, ...

    def window_for(self, days_left: int) -> int | None:
        """The smallest window ``days_left`` is within; None if it is within none."""
        return next((w for w in self.windows if days_left <= w), None)


@dataclass(frozen=True)
class ReminderPolicy:
    types: Mapping[str, TypeWindows]  # by type code
    source: str = ""

    def with_days(self, days: int) -> ReminderPolicy:
        """Every type reminded ``days`` before valid_to (``--days N``), one window."""
        if not 0 <= days <= MAX_WINDOW_DAYS:
            raise ConfigurationError(f"--days must be between 0 and {MAX_WINDOW_DAYS}, got {days}")
        return replace(
            self,
            types={code: replace(t, windows=(days,)) for code, t in self.types.items()},
            source=f"{self.source} (--days {days})",
        )


class _PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: tuple[int, ...] = ()
    types: dict[str, tuple[int, ...]] = {}

    @field_validator("default", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("types", mode="before")
    @classmethod
    def _each_one_or_many(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                str(k): [v] if isinstance(v, int) and not isinstance(v, bool) else v for k, v in value.items()
            }
        return value


def _contract_types(contracts_dir: Path) -> dict[str, dict[str, Any]]:
    """Certificate type code → what the contract says of it (name, dataset, valid_to, masking)."""
    from contracts.model import all_contracts

    found: dict[str, dict[str, Any]] = {}
    for contract in all_contracts(contracts_dir).values():
        spec = contract.custom("certificate")
        if not isinstance(spec, dict) or "typeCode" not in spec:
            continue
        holders = [h for h in spec.get("holders") or () if isinstance(h, dict)]

        classes = {p.name: (p.classification or "").lower() for p in contract.table.properties}

        def personal(column: str | None, classes: dict[str, str] = classes) -> bool:
            # A name column the contract does not classify as public is masked.
            return classes.get(column or "", "restricted") in _PERSONAL_CLASSES

        id_types = [str(h.get("idType") or "") for h in holders]
        found[str(spec["typeCode"])] = {
            "name": str(spec.get("typeName") or spec["typeCode"]),
            "dataset": contract.id,
            "expires": bool(spec.get("validToColumn")),
            "source": str(contract.source),
            "mask_names": any(personal(h.get("nameColumn")) for h in holders) or not holders,
            "id_type": id_types[0] if id_types else "",
        }
    return found


def load_policy(path: Path, contracts_dir: Path) -> ReminderPolicy:
    """The reminder windows of ``path`` checked against the contracts in ``contracts_dir``;
    ConfigurationError naming the file and line of each problem."""
    from contracts.model import yaml_line
    from onceonly.yamlfile import YamlProblem, read_yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot read the reminder windows: {exc}") from None
    try:
        data, node = read_yaml(text, str(path))
    except YamlProblem as exc:
        where = f"{path}:{exc.line}" if exc.line else str(path)
        raise ConfigurationError(f"{where}: cannot read the reminder windows: {exc.problem}") from None
    try:
        parsed = _PolicyFile.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems = []
        for e in exc.errors()[:20]:
            loc = tuple(e["loc"])
            line = yaml_line(node, loc[:2]) if loc else None
            where = f"{path}:{line}" if line else str(path)
            problems.append(f"{where}: {'.'.join(map(str, loc)) or 'the file'}: {e['msg']}")
        raise ConfigurationError("\n".join(problems)) from None

    known = _contract_types(contracts_dir)
    by_name = {v["name"]: code for code, v in known.items()}
    expiring = sorted(v["name"] for v in known.values() if v["expires"])
    problems = []

    def check_days(days: Sequence[int], loc: tuple[Any, ...], what: str) -> None:
        for at, d in enumerate(days):
            if d < 0:
                problems.append(
                    f"{path}:{yaml_line(node, (*loc, at)) or '?'}: {what}: {d} days is negative "
                    "(days before valid_to: 0 or more)"
                )
            elif d > MAX_WINDOW_DAYS:
                problems.append(
                    f"{path}:{yaml_line(node, (*loc, at)) or '?'}: {what}: {d} days is more than "
                    f"{MAX_WINDOW_DAYS}"
                )

    if "default" in (data or {}):
        check_days(parsed.default, ("default",), "default")
    windows: dict[str, tuple[int, ...]] = {}
    for name, days in parsed.types.items():
        code = name if name in known else by_name.get(name)
        at_line = yaml_line(node, ("types", name)) or "?"
        if code is None:
            problems.append(
                f"{path}:{at_line}: unknown certificate type {name!r} (no data contract issues it; "
                f"known: {', '.join(sorted(by_name)) or 'none'})"
            )
            continue
        if not known[code]["expires"]:
            problems.append(
                f"{path}:{at_line}: {known[code]['name']} does not expire: its contract "
                f"({Path(known[code]['source']).name}) has no validToColumn (types that do: "
                f"{', '.join(expiring) or 'none'})"
            )
            continue
        if code in windows:
            problems.append(f"{path}:{at_line}: {known[code]['name']} is listed twice (by name and code)")
            continue
        check_days(days, ("types", name), name)
        windows[code] = days
    if problems:
        raise ConfigurationError("\n".join(problems))
    types = {}
    for code, facts in sorted(known.items()):
        days = windows.get(code, parsed.default)
        if not facts["expires"] or not days:
            continue
        types[code] = TypeWindows(
            type_code=code,
            type_name=facts["name"],
            dataset=facts["dataset"],
            windows=tuple(sorted(set(days))),
            mask_names=facts["mask_names"],
            id_type=facts["id_type"],
        )
    return ReminderPolicy(types, str(path))


def reminders_dir(home: Path) -> Path:
    """Where the lists and the outbox are written: ``<home>/reminders``."""
    return home / "reminders"


# --------------------------------------------------------------------------------------------
# Finding what is due, and what to close


@dataclass(frozen=True)
class Due:
    """A reminder to send: a certificate within a window not reminded yet."""

    cert_id: str
    dataset: str
    record_key: str
    holder_id: str = field(repr=False)
    holder_name: str | None = field(repr=False)
    type_code: str
    type_name: str
    township: str | None
    valid_to: dt.date
    window_days: int
    days_left: int

    @property
    def reminder_id(self) -> str:
        return reminder_id(self.dataset, self.record_key, self.holder_id, self.valid_to, self.window_days)


@dataclass(frozen=True)
class Closing:
    """A reminder sent earlier that ends now: renewed (已换证), expired (已到期) or void (已失效)."""

    reminder_id: str
    cert_id: str
    holder_id: str = field(repr=False)
    township: str | None
    window_days: int
    status: str
    closed_by: str | None = None


@dataclass(frozen=True)
class Plan:
    day: dt.date
    due: tuple[Due, ...]
    closing: tuple[Closing, ...]


def reminder_id(dataset: str, record_key: str, holder_id: str, valid_to: dt.date, window: int) -> str:
    """The key of a reminder: its certificate's lineage, the valid_to and the window. Private:
    it is a hash of a holder's ID number, so it never leaves the catalog."""
    parts = (dataset, record_key, holder_id, valid_to.isoformat(), str(window))
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()


def _same_lineage(other: Any, row: Any) -> Any:
    return and_(
        other.c.dataset == row.dataset,
        other.c.record_key == row.record_key,
        other.c.holder_id == row.holder_id,
        other.c.type_code == row.type_code,
    )


def find_reminders(conn: Connection, policy: ReminderPolicy, day: dt.date) -> Plan:
    """The reminders due on ``day`` and the open ones to close (nothing is written).

    One query per certificate type over ``certificates`` (its valid_to between ``day`` and the
    largest window), the renewal checked in SQL; one query over the open reminders."""
    cert = certificates
    later = certificates.alias("later")
    renewed = exists().where(
        and_(
            _same_lineage(later, cert.c),
            later.c.status == STATUS_VALID,
            or_(later.c.valid_to.is_(None), later.c.valid_to > cert.c.valid_to),
        )
    )
    candidates: list[Any] = []
    for code, windows in sorted(policy.types.items()):
        horizon = day + dt.timedelta(days=max(windows.windows))
        candidates += conn.execute(
            select(
                cert.c.cert_id,
                cert.c.dataset,
                cert.c.record_key,
                cert.c.holder_id,
                cert.c.holder_name,
                cert.c.type_code,
                cert.c.type_name,
                cert.c.township,
                cert.c.valid_to,
            )
            .where(
                and_(
                    cert.c.type_code == code,
                    cert.c.status == STATUS_VALID,
                    cert.c.valid_to.is_not(None),
                    cert.c.valid_to >= day,
                    cert.c.valid_to <= horizon,
                    ~renewed,
                )
            )
            .order_by(cert.c.leaf_index)
        ).all()
    # The smallest window each lineage and valid_to was reminded for already.
    sent: dict[tuple[str, str, str, dt.date], int] = {}
    if candidates:
        horizon = day + dt.timedelta(days=max(max(t.windows) for t in policy.types.values()))
        r = expiry_reminders
        for row in conn.execute(
            select(r.c.dataset, r.c.record_key, r.c.holder_id, r.c.valid_to, func.min(r.c.window_days))
            .where(and_(r.c.valid_to >= day, r.c.valid_to <= horizon))
            .group_by(r.c.dataset, r.c.record_key, r.c.holder_id, r.c.valid_to)
        ):
            sent[(row[0], row[1], row[2], row[3])] = int(row[4])
    due: dict[str, Due] = {}
    for row in candidates:
        days_left = (row.valid_to - day).days
        window = policy.types[row.type_code].window_for(days_left)
        if window is None:
            continue
        already = sent.get((row.dataset, row.record_key, row.holder_id, row.valid_to))
        if already is not None and already <= window:
            continue
        item = Due(
            cert_id=row.cert_id,
            dataset=row.dataset,
            record_key=row.record_key,
            holder_id=row.holder_id,
            holder_name=row.holder_name,
            type_code=row.type_code,
            type_name=row.type_name,
            township=row.township,
            valid_to=row.valid_to,
            window_days=window,
            days_left=days_left,
        )
        due.setdefault(item.reminder_id, item)  # two 有效 versions of one lineage: once
    return Plan(day, tuple(due.values()), tuple(_closing(conn, day)))


def _closing(conn: Connection, day: dt.date) -> Iterable[Closing]:
    r = expiry_reminders
    later = certificates.alias("later")
    renewed_by = (
        select(func.min(later.c.cert_id))
        .where(
            and_(
                _same_lineage(later, r.c),
                later.c.status == STATUS_VALID,
                or_(later.c.valid_to.is_(None), later.c.valid_to > r.c.valid_to),
            )
        )
        .scalar_subquery()
    )
    alive = exists().where(and_(_same_lineage(later, r.c), later.c.status == STATUS_VALID))
    rows = conn.execute(
        select(
            r.c.reminder_id,
            r.c.cert_id,
            r.c.holder_id,
            r.c.township,
            r.c.valid_to,
            r.c.window_days,
            renewed_by.label("renewed_by"),
            alive.label("alive"),
        ).where(r.c.status == STATUS_OPEN)
    )
    for row in rows:
        if row.renewed_by is not None:
            status, by = STATUS_RENEWED, row.renewed_by
        elif row.valid_to < day:
            status, by = STATUS_EXPIRED, None
        elif not row.alive:
            status, by = STATUS_VOID, None
        else:
            continue
        yield Closing(row.reminder_id, row.cert_id, row.holder_id, row.township, row.window_days, status, by)


# --------------------------------------------------------------------------------------------
# Sending: the rows, the notices and the log, in one transaction


@dataclass(frozen=True)
class Notice:
    notice_id: str
    subject_id: str = field(repr=False)
    township: str | None
    text: str = field(repr=False)
    reminders: int


@dataclass(frozen=True)
class Sent:
    day: dt.date
    reminders: tuple[Due, ...]
    notices: tuple[Notice, ...]
    closed: tuple[Closing, ...]
    skipped: int  # due in the plan, but sent meanwhile (another run)
    tree_size: int | None

    def by_township(self) -> dict[str | None, Counter[str]]:
        counts: dict[str | None, Counter[str]] = defaultdict(Counter)
        for d in self.reminders:
            counts[d.township]["sent"] += 1
        for n in self.notices:
            counts[n.township]["notices"] += 1
        for c in self.closed:
            counts[c.township][c.status] += 1
        return dict(counts)


def _salutation(due: Due, policy: ReminderPolicy) -> str:
    name = due.holder_name or ""
    rule = policy.types.get(due.type_code)
    if rule is None or rule.mask_names:
        name = mask_name(name) or ""
    return f"尊敬的{name}" if name else "您好"


def _date_zh(day: dt.date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def notice_text(items: Sequence[Due], policy: ReminderPolicy, township_name: str | None) -> str:
    """The Chinese text of one subject's notice, listing their certificates about to expire."""
    lines = [
        f"【证照到期提醒】{_salutation(items[0], policy)}："
        "您名下以下电子证照即将到期，请在到期前及时办理换证（延续）手续："
    ]
    for at, d in enumerate(sorted(items, key=lambda d: (d.valid_to, d.cert_id)), 1):
        when = "今日到期" if d.days_left == 0 else f"还有{d.days_left}天到期"
        lines.append(f"{at}. {d.type_name}（证照标识 {d.cert_id}），有效期至{_date_zh(d.valid_to)}，{when}。")
    where = f"{township_name}便民服务中心" if township_name else "所在镇街便民服务中心"
    lines.append(f"可通过“一网通办”或到{where}办理。如已办理，请忽略本通知。")
    return "\n".join(lines)


def send_reminders(
    conn: Connection,
    log: TransparencyLog,
    plan: Plan,
    policy: ReminderPolicy,
    *,
    township_names: Mapping[str, str] | None = None,
    now: dt.datetime | None = None,
) -> Sent:
    """Record and log ``plan`` in the caller's transaction (``catalog.begin()``): each reminder
    not already there, a notice per subject, each closing still open. A reminder another run
    sent meanwhile is skipped; two runs at once cannot both send one (the key)."""
    now = now or utcnow()
    names = township_names or {}
    r = expiry_reminders
    present: set[str] = set()
    for chunk in chunks([d.reminder_id for d in plan.due]):
        present |= set(conn.execute(select(r.c.reminder_id).where(r.c.reminder_id.in_(chunk))).scalars())
    due = [d for d in plan.due if d.reminder_id not in present]
    still_open: set[str] = set()
    for chunk in chunks([c.reminder_id for c in plan.closing]):
        still_open |= set(
            conn.execute(
                select(r.c.reminder_id).where(and_(r.c.reminder_id.in_(chunk), r.c.status == STATUS_OPEN))
            ).scalars()
        )
    closing = [c for c in plan.closing if c.reminder_id in still_open]
    planned = {c.reminder_id for c in closing}
    closing += [c for c in _resent(conn, due) if c.reminder_id not in planned]

    by_subject: dict[str, list[Due]] = defaultdict(list)
    for d in due:
        by_subject[d.holder_id].append(d)
    notices = []
    notice_of: dict[str, str] = {}
    for subject, items in by_subject.items():
        township = items[0].township
        notice = Notice(
            uuid.uuid4().hex,
            subject,
            township,
            notice_text(items, policy, names.get(township or "")),
            len(items),
        )
        notices.append(notice)
        notice_of[subject] = notice.notice_id

    day = plan.day.isoformat()
    stamp = now.isoformat(timespec="seconds")
    entries = [
        Committed(
            KIND_REMINDER,
            d.cert_id,
            {
                "event": "sent",
                "certificate": d.cert_id,
                "type": d.type_code,
                "window_days": d.window_days,
                "township": d.township,
                "day": day,
                "notice": notice_of[d.holder_id],
                "at": stamp,
            },
            d.holder_id,
        )
        for d in due
    ]
    entries += [
        Committed(
            KIND_REMINDER,
            c.cert_id,
            {
                "event": "closed",
                "certificate": c.cert_id,
                "window_days": c.window_days,
                "township": c.township,
                "status": c.status,
                "renewed_by": c.closed_by,
                "day": day,
                "at": stamp,
            },
            c.holder_id,
        )
        for c in closing
    ]
    if not entries:
        return Sent(plan.day, (), (), (), len(plan.due) - len(due), None)
    appended = append_committed_many(conn, log, entries)
    first = appended.first_index
    if due:
        conn.execute(
            r.insert(),
            [
                {
                    "reminder_id": d.reminder_id,
                    "cert_id": d.cert_id,
                    "dataset": d.dataset,
                    "record_key": d.record_key,
                    "holder_id": d.holder_id,
                    "type_code": d.type_code,
                    "township": d.township,
                    "valid_to": d.valid_to,
                    "window_days": d.window_days,
                    "sent_on": plan.day,
                    "sent_at": now,
                    "leaf_index": first + at,
                    "notice_id": notice_of[d.holder_id],
                    "status": STATUS_OPEN,
                }
                for at, d in enumerate(due)
            ],
        )
        conn.execute(
            expiry_notices.insert(),
            [
                {
                    "notice_id": n.notice_id,
                    "subject_id": n.subject_id,
                    "township": n.township,
                    "run_on": plan.day,
                    "created_at": now,
                    "reminders": n.reminders,
                    "text": n.text,
                }
                for n in notices
            ],
        )
    for at, c in enumerate(closing, start=len(due)):
        conn.execute(
            update(r)
            .where(and_(r.c.reminder_id == c.reminder_id, r.c.status == STATUS_OPEN))
            .values(status=c.status, closed_on=plan.day, closed_by=c.closed_by, closed_leaf=first + at)
        )
    return Sent(
        plan.day, tuple(due), tuple(notices), tuple(closing), len(plan.due) - len(due), appended.tree_size
    )


def _resent(conn: Connection, due: Sequence[Due]) -> list[Closing]:
    """The open reminders of a larger window than one of ``due``, of the same lineage and
    valid_to: closed as 已再次提醒 when it is sent."""
    r = expiry_reminders
    smallest: dict[tuple[str, str, str, dt.date], int] = {}
    for d in due:
        key = (d.dataset, d.record_key, d.holder_id, d.valid_to)
        smallest[key] = min(smallest.get(key, d.window_days), d.window_days)
    found: dict[str, Closing] = {}
    for chunk in chunks(sorted(smallest), 100):
        lineage = or_(
            *(
                and_(r.c.dataset == a, r.c.record_key == b, r.c.holder_id == c, r.c.valid_to == v)
                for a, b, c, v in chunk
            )
        )
        for row in conn.execute(
            select(
                r.c.reminder_id, r.c.cert_id, r.c.dataset, r.c.record_key, r.c.holder_id, r.c.valid_to,
                r.c.township, r.c.window_days,
            ).where(and_(r.c.status == STATUS_OPEN, lineage))
        ):  # fmt: skip
            if row.window_days > smallest[(row.dataset, row.record_key, row.holder_id, row.valid_to)]:
                found[row.reminder_id] = Closing(
                    row.reminder_id, row.cert_id, row.holder_id, row.township, row.window_days, STATUS_RESENT
                )
    return [found[k] for k in sorted(found)]


def mark_delivered(conn: Connection, notice_ids: Iterable[str], *, at: dt.datetime | None = None) -> int:
    """The gateway's report: these notices were delivered. Returns how many were marked now."""
    at = at or utcnow()
    done = 0
    for chunk in chunks(sorted(set(notice_ids))):
        done += conn.execute(
            update(expiry_notices)
            .where(and_(expiry_notices.c.notice_id.in_(chunk), expiry_notices.c.delivered_at.is_(None)))
            .values(delivered_at=at)
        ).rowcount
    return done


# --------------------------------------------------------------------------------------------
# The township lists (XLSX) and the outbox (JSONL)


@dataclass(frozen=True)
class ListedReminder:
    """A reminder as staff see it: the holder masked as the contract classifies them."""

    township: str | None
    type_name: str
    cert_id: str
    holder_shown: str
    id_shown: str
    valid_to: dt.date
    days_left: int
    window_days: int
    sent_on: dt.date
    status: str
    closed_by: str | None
    new: bool


def _shown(policy: ReminderPolicy, type_code: str, name: str | None, holder_id: str) -> tuple[str, str]:
    rule = policy.types.get(type_code)
    shown_name = (mask_name(name) if rule is None or rule.mask_names else name) or ""
    # The holder's identifier always masked, a USCC too (the name, when public, tells staff
    # who it is); and whatever the contract says, no citizen ID in a name (a 个体工商户's).
    return scrub_text(shown_name), mask_citizen_id(holder_id) or ""


def listed_reminders(
    conn: Connection,
    policy: ReminderPolicy,
    day: dt.date,
    *,
    township: str | None = None,
    statuses: Sequence[str] = (STATUS_OPEN,),
) -> list[ListedReminder]:
    """Reminders in ``statuses``, and those sent or closed on ``day``, masked, by township and
    valid_to."""
    r = expiry_reminders
    c = certificates
    query = (
        select(
            r.c.township,
            r.c.type_code,
            c.c.type_name,
            r.c.cert_id,
            c.c.holder_name,
            r.c.holder_id,
            r.c.valid_to,
            r.c.window_days,
            r.c.sent_on,
            r.c.status,
            r.c.closed_by,
        )
        .select_from(r.outerjoin(c, c.c.cert_id == r.c.cert_id))
        .where(or_(r.c.status.in_(list(statuses)), r.c.sent_on == day, r.c.closed_on == day))
        # A reminder sent again for a smaller window is listed as that one: one row, not two
        # (unless 已再次提醒 is asked for).
        .where(or_(r.c.status != STATUS_RESENT, r.c.status.in_(list(statuses))))
        .order_by(r.c.township, r.c.valid_to, r.c.cert_id, r.c.window_days)
    )
    if township is not None:
        query = query.where(r.c.township == township)
    out = []
    for row in conn.execute(query):
        name, shown_id = _shown(policy, row.type_code, row.holder_name, row.holder_id)
        out.append(
            ListedReminder(
                township=row.township,
                type_name=row.type_name or row.type_code,
                cert_id=row.cert_id,
                holder_shown=name,
                id_shown=shown_id,
                valid_to=row.valid_to,
                days_left=(row.valid_to - day).days,
                window_days=row.window_days,
                sent_on=row.sent_on,
                status=row.status,
                closed_by=row.closed_by,
                new=row.sent_on == day,
            )
        )
    return out


@dataclass(frozen=True)
class Written:
    lists: dict[str, tuple[Path, int]]  # township (or NO_TOWNSHIP) → (file, rows)
    outbox: Path | None
    notices: int
    rewritten: tuple[Path, ...] = ()  # earlier days' outboxes written again (undelivered missing)


def _cell(value: Any) -> Any:
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    return ILLEGAL_CHARACTERS_RE.sub("", value) if isinstance(value, str) else value


def write_list(path: Path, rows: Sequence[ListedReminder], township_names: Mapping[str, str]) -> None:
    """One township's list as XLSX (opens in WPS and Excel): Chinese headers, text cells escaped."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "到期提醒"
    sheet.append(list(LIST_HEADERS))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for at, item in enumerate(rows, 1):
        code = item.township or ""
        sheet.append(
            [
                _cell(v)
                for v in spreadsheet_row(
                    [
                        at,
                        code,
                        township_names.get(code, ""),
                        item.type_name,
                        item.cert_id,
                        item.holder_shown,
                        item.id_shown,
                        item.valid_to,
                        item.days_left,
                        item.window_days,
                        item.sent_on,
                        item.status,
                        item.closed_by or "",
                        "是" if item.new else "否",
                    ]
                )
            ]
        )
    for column in ("H", "K"):
        for cell in sheet[column][1:]:
            cell.number_format = "yyyy-mm-dd"
    widths = {"A": 6, "B": 14, "C": 12, "D": 14, "E": 44, "F": 30, "G": 22, "H": 12, "I": 9, "J": 13}
    widths |= {"K": 12, "L": 9, "M": 44, "N": 9}
    for column, width in widths.items():
        sheet.column_dimensions[column].width = width
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = sheet.dimensions
    private_dir(path.parent)
    write_atomic(path, lambda tmp: book.save(tmp))


def write_reminder_files(
    conn: Connection,
    policy: ReminderPolicy,
    out_dir: Path,
    day: dt.date,
    *,
    township_names: Mapping[str, str] | None = None,
) -> Written:
    """The day's lists, one XLSX per township with open reminders or reminders sent or closed
    on ``day``, and the day's outbox ``notices.jsonl``; rewritten whole from the catalog, so a
    second run the same day (or a run that died after recording) writes them complete."""
    names = township_names or {}
    folder = out_dir / day.isoformat()
    by_township: dict[str, list[ListedReminder]] = defaultdict(list)
    for item in listed_reminders(conn, policy, day):
        by_township[item.township or NO_TOWNSHIP].append(item)
    lists = {}
    for township, rows in sorted(by_township.items()):
        path = folder / f"township={township}" / LIST_NAME
        write_list(path, rows, names)
        lists[township] = (path, len(rows))
    outbox, count = _write_outbox(conn, policy, out_dir, day)
    # An earlier day's outbox lacking some of its notices not delivered yet (its run died between
    # sending and writing, or a second run that day did): written again whole, so none is lost.
    n = expiry_notices
    rewritten = []
    earlier = conn.execute(
        select(n.c.run_on, func.count())
        .where(and_(n.c.delivered_at.is_(None), n.c.run_on != day))
        .group_by(n.c.run_on)
        .order_by(n.c.run_on)
    ).all()
    for run_on, undelivered in earlier:
        if _outbox_lacks(out_dir / run_on.isoformat() / OUTBOX_NAME, conn, run_on, undelivered):
            again, _ = _write_outbox(conn, policy, out_dir, run_on)
            if again is not None:
                rewritten.append(again)
    return Written(lists, outbox, count, tuple(rewritten))


def _outbox_lacks(path: Path, conn: Connection, run_on: dt.date, undelivered: int) -> bool:
    """Whether the outbox ``path`` of ``run_on`` lacks one of its notices not delivered yet."""
    try:
        written = {json.loads(line)["notice_id"] for line in path.read_text(encoding="utf-8").splitlines()}
    except (OSError, ValueError, KeyError, TypeError):
        return True
    if len(written) < undelivered:
        return True
    n = expiry_notices
    wanted = conn.execute(
        select(n.c.notice_id).where(and_(n.c.run_on == run_on, n.c.delivered_at.is_(None)))
    ).scalars()
    return any(notice_id not in written for notice_id in wanted)


def _write_outbox(
    conn: Connection, policy: ReminderPolicy, out_dir: Path, day: dt.date
) -> tuple[Path | None, int]:
    """The outbox ``notices.jsonl`` of the notices of ``day`` (run_on), rewritten whole."""
    folder = out_dir / day.isoformat()
    n = expiry_notices
    notices = conn.execute(
        select(
            n.c.notice_id, n.c.subject_id, n.c.township, n.c.run_on, n.c.created_at, n.c.reminders, n.c.text
        )
        .where(n.c.run_on == day)
        .order_by(n.c.created_at, n.c.notice_id)
    ).all()
    outbox = None
    if notices:
        id_types = _id_types(conn, policy, [row.notice_id for row in notices])
        lines = [
            json.dumps(
                {
                    "notice_id": row.notice_id,
                    "channel": "sms",
                    "recipient": {"id_type": id_types.get(row.notice_id, ""), "id": row.subject_id},
                    "township": row.township,
                    "run_on": row.run_on.isoformat(),
                    "reminders": row.reminders,
                    "text": row.text,
                },
                ensure_ascii=False,
                sort_keys=True,
            )
            for row in notices
        ]
        outbox = folder / OUTBOX_NAME
        private_dir(folder)
        write_atomic(outbox, "\n".join(lines) + "\n")
    return outbox, len(notices)


def _id_types(conn: Connection, policy: ReminderPolicy, notice_ids: Sequence[str]) -> dict[str, str]:
    r = expiry_reminders
    out: dict[str, str] = {}
    for chunk in chunks(notice_ids):
        for row in conn.execute(select(r.c.notice_id, r.c.type_code).where(r.c.notice_id.in_(chunk))):
            rule = policy.types.get(row.type_code)
            out.setdefault(row.notice_id, rule.id_type if rule else "")
    return out


# --------------------------------------------------------------------------------------------
# Words for the run's artifacts


def township_table(sent: Sent, written: Written, township_names: Mapping[str, str]) -> list[dict[str, Any]]:
    """Per township: reminders sent and closed this run, notices, rows in its list (no person)."""
    counts = sent.by_township()
    rows = []
    for township in sorted({*(t or NO_TOWNSHIP for t in counts), *written.lists}):
        c = counts.get(None if township == NO_TOWNSHIP else township, Counter())
        rows.append(
            {
                "镇街代码": township,
                "镇街": township_names.get(township, "（未知镇街）" if township == NO_TOWNSHIP else ""),
                "新发提醒": c["sent"],
                "通知": c["notices"],
                "已换证": c[STATUS_RENEWED],
                "已到期": c[STATUS_EXPIRED],
                "已失效": c[STATUS_VOID],
                "清单行数": written.lists.get(township, (None, 0))[1],
            }
        )
    return rows


def report_markdown(
    sent: Sent, written: Written, policy: ReminderPolicy, township_names: Mapping[str, str]
) -> str:
    """The run's report in Chinese; counts and certificate types only, nobody named."""
    closed = Counter(c.status for c in sent.closed)
    windows = "；".join(f"{t.type_name} {'、'.join(map(str, t.windows))} 天" for t in policy.types.values())
    lines = [
        f"# 证照到期提醒 {sent.day.isoformat()}",
        "",
        f"- 提醒窗口：{windows or '（无可到期的证照类型）'}",
        f"- 本次新发提醒 **{len(sent.reminders)}** 条，通知持证人 **{len(sent.notices)}** 位"
        + (f"（另有 {sent.skipped} 条已由其他运行发送）" if sent.skipped else ""),
        f"- 关闭提醒：已换证 {closed[STATUS_RENEWED]} 条，已到期 {closed[STATUS_EXPIRED]} 条，"
        f"已失效 {closed[STATUS_VOID]} 条，已再次提醒（较小窗口）{closed[STATUS_RESENT]} 条",
        f"- 镇街清单 {len(written.lists)} 份，通知发件箱 {written.notices} 条"
        + (f"（{written.outbox.name}）" if written.outbox else "")
        + (f"；补写此前未送达通知的发件箱 {len(written.rewritten)} 份" if written.rewritten else ""),
        "",
    ]
    by_type = Counter(d.type_name for d in sent.reminders)
    if by_type:
        lines += ["## 按证照类型", "", "| 证照类型 | 新发提醒 |", "|---|---:|"]
        lines += [f"| {name} | {count} |" for name, count in sorted(by_type.items())]
        lines.append("")
    table = township_table(sent, written, township_names)
    if table:
        lines += [
            "## 按镇街",
            "",
            "| 镇街 | 新发提醒 | 通知 | 已换证 | 已到期 | 清单行数 |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {row['镇街'] or row['镇街代码']} | {row['新发提醒']} | {row['通知']} | {row['已换证']} | "
            f"{row['已到期']} | {row['清单行数']} |"
            for row in table
        ]
        lines.append("")
    lines.append("每条提醒只发送一次；证照换证后不再提醒。清单中的证件号码和个人姓名已按数据合同脱敏。")
    return "\n".join(lines)


__all__ = [
    "LIST_HEADERS",
    "LIST_NAME",
    "NO_TOWNSHIP",
    "OUTBOX_NAME",
    "STATUSES",
    "STATUS_EXPIRED",
    "STATUS_OPEN",
    "STATUS_RENEWED",
    "STATUS_RESENT",
    "STATUS_VOID",
    "Closing",
    "Due",
    "ListedReminder",
    "Notice",
    "Plan",
    "ReminderPolicy",
    "Sent",
    "TypeWindows",
    "Written",
    "find_reminders",
    "listed_reminders",
    "load_policy",
    "mark_delivered",
    "notice_text",
    "reminder_id",
    "reminders_dir",
    "report_markdown",
    "send_reminders",
    "township_table",
    "write_list",
    "write_reminder_files",
]
