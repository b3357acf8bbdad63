"""免申即享 decisions: who qualifies under each benefit rule, granted once, reversed when facts change.

Example::

    rules = load_rules(settings.benefit_rules_dir, settings.contracts_dir)
    with catalog.read() as conn:
        evaluation = evaluate(conn, rules[0], district="120114", today=dt.date(2026, 12, 3))
    evaluation.grants, evaluation.reversals          # decisions to make (subjects in memory only)
    recorded = record(catalog, log, [evaluation])    # logged and kept; the same run twice: nothing new
    print(explain_text(explain(conn, recorded[0].decision_id)))

Evaluation runs over the catalog's certificates: per fact one SQL query (type, state, in force
on the day, and the conditions on catalog columns — the age from the ID number's birth date
compared as text, §5.2.2 of GB 11643), then the conditions on certificate fields over the
certificates' own bytes (their openings, parsed column-wise with Arrow), the newest certificate
per holder, and the subjects holding every fact (an Arrow join). No Python loop over all
certificates.

A subject who qualifies and holds no grant in force gets a **grant** (under a rule with
``once_per``: per subject and certificate of that fact, so a second child brings a second
grant); a grant whose subject no longer qualifies *and* one of whose facts changed gets a
**reversal**. A fact is judged on the newest version of its certificate (``previous_id``
followed: a renewal is no change): revoked, suspended, cancelled, expired, or no longer meeting
the fact's conditions (a township out of the district) — the reversal names that version. A
subject who merely ages out of a time window (a birth more than a year ago) keeps a one-off
grant. Each decision is a log
leaf (kind ``benefit-decision``): the rule (id, version, name, department, its conditions in
words), the facts by certificate id with their state, the result, the reason and the day, and
a salted commitment to the subject — never the subject; ``use_subjects`` keeps subject and salt
as for a use of shared data (so the citizen sees their decisions among the uses of their data),
and ``benefit_decisions`` the readable row. Re-running with nothing changed records nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from catalog import (
    BUNDLE_LEAVES,
    Catalog,
    benefit_decisions,
    certificate_openings,
    certificates,
    chunks,
    use_subjects,
    utcnow,
)
from evidence.log import (
    KIND_DECISION,
    Committed,
    TransparencyLog,
    append_committed_many,
    leaf_at,
)
from onceonly.errors import OnceOnlyError, TransientError, VerificationFailed
from onceonly.privacy import mask_citizen_id
from sharing.benefit_rules import CATALOG_FIELDS, Condition, Fact, Rule, as_date_text, rule_document

GRANT = "grant"
REVERSAL = "reversal"
RESULT_NAMES = {GRANT: "符合条件，予以享受", REVERSAL: "不再符合条件，停止享受"}
SHANGHAI = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
_STATE_WORDS = {
    "暂扣": "已暂扣",
    "撤销": "已撤销",
    "吊销": "已吊销",
    "注销": "已注销",
    "失效": "已失效",
}


class DecisionsConflict(TransientError):
    """Another run recorded decisions of the same rule meanwhile: evaluate again."""


class DecisionNotFound(OnceOnlyError):
    """No decision with that id."""


def today_in_district() -> dt.date:
    """The day in Beijing time (a run at 03:00 Asia/Shanghai is 19:00 UTC the day before)."""
    return dt.datetime.now(SHANGHAI).date()


@dataclass(frozen=True)
class Proposed:
    """A decision to record: its subject is held in memory only, never in a repr."""

    result: str
    facts: tuple[dict[str, Any], ...]
    reason: str
    reverses: str | None = None
    subject: str = field(default="", repr=False)

    @property
    def subject_masked(self) -> str:
        return mask_citizen_id(self.subject) or ""


@dataclass(frozen=True)
class Evaluation:
    rule: Rule
    today: dt.date
    eligible: int
    in_force: int  # grants in force before this evaluation
    grants: tuple[Proposed, ...]
    reversals: tuple[Proposed, ...]
    seen_leaf: int  # the newest decision leaf of the rule when evaluated (-1: none)


@dataclass(frozen=True)
class Recorded:
    decision_id: str
    rule_id: str
    result: str
    leaf_index: int
    subject_masked: str
    reason: str


# ------------------------------------------------------------------ evaluation


def evaluate(conn: Connection, rule: Rule, *, district: str, today: dt.date) -> Evaluation:
    """The decisions ``rule`` calls for on ``today`` against what is already decided."""
    # The newest decision leaf first: read after the grants in force (each statement sees what
    # is committed when it runs, PostgreSQL's READ COMMITTED), a decision committed in between
    # would be counted as seen but not as in force, and granted twice. Read before, such a
    # decision is newer than ``seen_leaf`` and ``record`` refuses the evaluation.
    seen = conn.execute(
        select(func.max(benefit_decisions.c.leaf_index)).where(benefit_decisions.c.rule_id == rule.id)
    ).scalar()
    eligible = eligible_subjects(conn, rule, district=district, today=today)
    active = _grants_in_force(conn, rule)
    keys = pc.binary_join_element_wise(eligible.column("subject"), eligible.column("key"), _SEP)
    active_keys = pa.array([_SEP.join((a.subject, a.key)) for a in active], pa.string())
    new = eligible.filter(pc.invert(pc.is_in(keys, value_set=active_keys)))
    grants = tuple(
        Proposed(GRANT, _facts_of(rule, row), _grant_reason(rule), None, row["subject"])
        for row in new.to_pylist()
    )
    still = set(keys.to_pylist()) if active else set()
    gone = [a for a in active if _SEP.join((a.subject, a.key)) not in still]
    reversals = tuple(_reversals(conn, rule, gone, district=district, today=today))
    return Evaluation(
        rule, today, eligible.num_rows, len(active), grants, reversals, -1 if seen is None else int(seen)
    )


_SEP = "\x1f"  # between a subject and the key of its triggering certificate


def eligible_subjects(conn: Connection, rule: Rule, *, district: str, today: dt.date) -> pa.Table:
    """One row per qualifying subject — per subject and certificate of the ``once_per`` fact,
    for an event-triggered rule: ``subject``, ``key`` (the triggering certificate's dataset and
    record key, the same across its versions; "" without ``once_per``) and, per fact ``i``,
    ``cert_i``, ``leaf_i``, ``status_i`` (the newest certificate of that fact the subject holds)."""
    joined: pa.Table | None = None
    for i, fact in enumerate(rule.facts):
        trigger = i == rule.trigger
        held = _fact_holders(conn, fact, district=district, today=today, per_certificate=trigger)
        names = ["subject", f"cert_{i}", f"leaf_{i}", f"status_{i}"]
        held = held.rename_columns([*names, "key"] if trigger else names)
        joined = held if joined is None else joined.join(held, "subject", join_type="inner")
    assert joined is not None  # a rule has at least one fact
    if rule.trigger is None:
        joined = joined.append_column("key", pa.array([""] * joined.num_rows, pa.string()))
    return joined.sort_by([("subject", "ascending"), ("key", "ascending")])


def _fact_holders(
    conn: Connection, fact: Fact, *, district: str, today: dt.date, per_certificate: bool = False
) -> pa.Table:
    c = certificates.c
    where = [
        c.type_code == fact.certificate_type,
        c.status.in_(list(fact.status)),
        or_(c.valid_from.is_(None), c.valid_from <= today),
        or_(c.valid_to.is_(None), c.valid_to >= today),
    ]
    on_fields = []
    for condition in fact.conditions:
        if condition.field in CATALOG_FIELDS:
            where.append(_sql_condition(condition, district, today))
        else:
            on_fields.append(condition)
    rows = conn.execute(
        select(c.holder_id, c.cert_id, c.leaf_index, c.status, c.dataset, c.record_key)
        .where(and_(*where))
        .order_by(c.leaf_index)
    ).all()
    table = pa.table(
        {
            "holder_id": pa.array([r[0] for r in rows], pa.string()),
            "cert_id": pa.array([r[1] for r in rows], pa.string()),
            "leaf_index": pa.array([int(r[2]) for r in rows], pa.int64()),
            "status": pa.array([r[3] for r in rows], pa.string()),
            "key": pa.array([_lineage(r[4], r[5]) for r in rows], pa.string()),
        }
    )
    if on_fields and table.num_rows:
        table = _filter_on_fields(conn, table, on_fields, today)
    # The newest certificate per holder is the fact (a renewed one supersedes the older); of a
    # triggering fact, the newest version of each certificate (each birth is an event).
    by = ["holder_id", "key"] if per_certificate else ["holder_id"]
    newest = table.group_by(by).aggregate([("leaf_index", "max")]).rename_columns([*by, "leaf_index"])
    columns = ["holder_id", "cert_id", "leaf_index", "status"]
    return table.join(newest, [*by, "leaf_index"], join_type="inner").select(
        [*columns, "key"] if per_certificate else columns
    )


def _lineage(dataset: str, record_key: str) -> str:
    """What the versions of one certificate share (``uq_certificate_version`` less the version)."""
    return f"{dataset}/{record_key}"


def _sql_condition(condition: Condition, district: str, today: dt.date) -> Any:
    c = certificates.c
    op, value = condition.operator, condition.value
    if condition.field == "holder_age":
        # GB 11643 §5.2.2: digits 7-14 are the birth date, YYYYMMDD; compared as text, so that
        # "age >= 80 on 2026-12-03" is "born on or before 19461203" (a 29 February too).
        born = func.substr(c.holder_id, 7, 8)
        valid = and_(func.length(c.holder_id) == 18, born >= "18000101", born <= f"{today:%Y%m%d}")

        def cutoff(years: int) -> str:
            return f"{today.year - years:04d}{today.month:02d}{today.day:02d}"

        at_least = {  # age >= n  <=>  born <= cutoff(n)
            "mustBeGreaterOrEqualTo": born <= cutoff(value),
            "mustBeGreaterThan": born <= cutoff(value + 1),
            "mustBeLessThan": born > cutoff(value),
            "mustBeLessOrEqualTo": born > cutoff(value + 1),
            "mustBe": and_(born <= cutoff(value), born > cutoff(value + 1)),
            "mustNotBe": or_(born > cutoff(value), born <= cutoff(value + 1)),
        }[op]
        return and_(valid, at_least)
    column = c[condition.field]
    if op == "inDistrict":
        return and_(column.is_not(None), column.like(f"{district}%"))
    if op == "withinDays":
        return and_(column >= today - dt.timedelta(days=int(value)), column <= today)
    return _compare(column, op, value)


def _compare(column: Any, op: str, value: Any) -> Any:
    return {
        "mustBe": lambda: column == value,
        "mustNotBe": lambda: column != value,
        "mustBeGreaterThan": lambda: column > value,
        "mustBeGreaterOrEqualTo": lambda: column >= value,
        "mustBeLessThan": lambda: column < value,
        "mustBeLessOrEqualTo": lambda: column <= value,
    }[op]()


def _filter_on_fields(
    conn: Connection, table: pa.Table, conditions: list[Condition], today: dt.date
) -> pa.Table:
    """Keep the rows whose certificate's own fields meet ``conditions`` (read from the
    certificates' bytes, parsed column-wise)."""
    import pyarrow.json as pj

    names = sorted({c.field.removeprefix("fields.") for c in conditions})
    leaves, bodies = _bodies(conn, sorted(set(table.column("leaf_index").to_pylist())))
    schema = pa.schema([("fields", pa.struct([(n, pa.string()) for n in names]))])
    parsed = pj.read_json(
        pa.BufferReader(b"\n".join(bodies) + b"\n"),
        parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
    )
    values = pa.table(
        {
            "leaf_index": pa.array(leaves, pa.int64()),
            **{n: pc.struct_field(parsed.column("fields"), n) for n in names},
        }
    )
    table = table.join(values, "leaf_index", join_type="inner")
    keep = None
    for condition in conditions:
        column = table.column(condition.field.removeprefix("fields."))
        mask = _arrow_condition(column, condition, table.column("holder_id"), today)
        keep = mask if keep is None else pc.and_(keep, mask)
    assert keep is not None
    return table.filter(pc.fill_null(keep, False)).drop_columns(names)


def _bodies(conn: Connection, wanted: list[int]) -> tuple[list[int], list[bytes]]:
    """The certificate bytes of leaves ``wanted`` (sorted), from their openings: only the packed
    rows holding one of them are read, and only the wanted openings taken out of each (a rule
    over the births of a district need not decode its million household registers)."""
    o = certificate_openings.c
    starts: list[tuple[int, int]] = []
    for part in chunks(wanted):  # the rows holding these leaves: first_leaf <= leaf < first + count
        lo, hi = part[0], part[-1] + 1
        starts += [
            (int(r[0]), int(r[1]))
            for r in conn.execute(
                select(o.first_leaf, o.leaf_count)
                .where(and_(o.first_leaf > lo - BUNDLE_LEAVES, o.first_leaf < hi))
                .order_by(o.first_leaf)
            )
        ]
    rows: dict[int, list[int]] = {}
    firsts = sorted(set(starts))
    at = 0
    for leaf in wanted:
        while at + 1 < len(firsts) and firsts[at + 1][0] <= leaf:
            at += 1
        if firsts and firsts[at][0] <= leaf < firsts[at][0] + firsts[at][1]:
            rows.setdefault(firsts[at][0], []).append(leaf - firsts[at][0])
    leaves: list[int] = []
    bodies: list[bytes] = []
    for part in chunks(sorted(rows), 64):  # at most 64 packed rows in memory at once
        for first, blob in conn.execute(
            select(o.first_leaf, o.openings).where(o.first_leaf.in_(part)).order_by(o.first_leaf)
        ):
            positions = rows[int(first)]
            try:
                packed = pa.ipc.open_stream(pa.py_buffer(bytes(blob))).read_all()
            except pa.ArrowException as exc:
                raise VerificationFailed(f"the openings from leaf {first} are unreadable ({exc})") from exc
            leaves += [int(first) + p for p in positions]
            bodies += packed.column("body").take(pa.array(positions, pa.int64())).to_pylist()
    return leaves, bodies


def _arrow_condition(column: Any, condition: Condition, holders: Any, today: dt.date) -> Any:
    op, value = condition.operator, condition.value
    if op == "isSubject":
        return pc.equal(column, holders)
    if op == "withinDays":
        since = (today - dt.timedelta(days=int(value))).isoformat()
        return pc.and_(pc.greater_equal(column, since), pc.less_equal(column, today.isoformat()))
    if isinstance(value, bool):
        return _arrow_compare(pc.utf8_lower(column), op, str(value).lower())
    if isinstance(value, int | float):
        return _arrow_compare(pc.cast(column, pa.float64(), safe=False), op, float(value))
    return _arrow_compare(column, op, as_date_text(value))


def _arrow_compare(column: Any, op: str, value: Any) -> Any:
    function = {
        "mustBe": pc.equal,
        "mustNotBe": pc.not_equal,
        "mustBeGreaterThan": pc.greater,
        "mustBeGreaterOrEqualTo": pc.greater_equal,
        "mustBeLessThan": pc.less,
        "mustBeLessOrEqualTo": pc.less_equal,
    }[op]
    return function(column, value)


def _facts_of(rule: Rule, row: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    return tuple(
        {
            "fact": fact.name,
            "type": fact.certificate_type,
            "certificate": row[f"cert_{i}"],
            "leaf_index": row[f"leaf_{i}"],
            "status": row[f"status_{i}"],
        }
        for i, fact in enumerate(rule.facts)
    )


def _grant_reason(rule: Rule) -> str:
    return "满足全部条件：" + "；".join(
        f"{f.name}：{'，'.join(rule.describe(c) for c in f.conditions) or '有效'}" for f in rule.facts
    )


@dataclass(frozen=True)
class _InForce:
    decision_id: str
    subject: str = field(repr=False)
    facts: list[dict[str, Any]]
    decided_on: dt.date
    key: str  # its triggering certificate's lineage ("" for a rule without once_per)


def _grants_in_force(conn: Connection, rule: Rule) -> list[_InForce]:
    """The rule's grants not reversed, each with the key it was granted for."""
    d = benefit_decisions.c
    rows = conn.execute(
        select(d.decision_id, use_subjects.c.subject_id, d.facts, d.decided_on)
        .join(use_subjects, use_subjects.c.leaf_index == d.leaf_index)
        .where(and_(d.rule_id == rule.id, d.result == GRANT, d.reversed_by.is_(None)))
    ).all()
    grants = [(r[0], r[1], _json(r[2]), r[3]) for r in rows]
    if rule.once_per is None:
        return [_InForce(*g, key="") for g in grants]
    triggers = {
        g[0]: next((f["certificate"] for f in g[2] if f["fact"] == rule.once_per), "") for g in grants
    }
    lineage: dict[str, str] = {}
    for part in chunks(sorted(set(triggers.values()))):
        c = certificates.c
        for r in conn.execute(select(c.cert_id, c.dataset, c.record_key).where(c.cert_id.in_(part))):
            lineage[r[0]] = _lineage(r[1], r[2])
    return [_InForce(*g, key=lineage.get(triggers[g[0]], triggers[g[0]])) for g in grants]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _newest_versions(conn: Connection, cert_ids: list[str]) -> dict[str, str]:
    """Each certificate's newest version (following ``previous_id``; itself if never renewed)."""
    successor: dict[str, tuple[int, str]] = {}
    frontier = set(cert_ids)
    while frontier:
        found: set[str] = set()
        for part in chunks(sorted(frontier)):
            c = certificates.c
            for previous, cert_id, leaf in conn.execute(
                select(c.previous_id, c.cert_id, c.leaf_index).where(c.previous_id.in_(part))
            ):
                if previous not in successor or successor[previous][0] < int(leaf):
                    successor[previous] = (int(leaf), cert_id)
                    found.add(cert_id)
        frontier = found - set(successor)
    newest = {}
    for cert_id in cert_ids:
        at, steps = cert_id, 0
        while at in successor and steps <= len(successor):  # (a cycle in stored data: stop)
            at, steps = successor[at][1], steps + 1
        newest[cert_id] = at
    return newest


def _reversals(
    conn: Connection, rule: Rule, gone: list[_InForce], *, district: str, today: dt.date
) -> list[Proposed]:
    """Reversals of the grants whose subject no longer qualifies and one of whose facts changed.

    A fact is judged on the newest version of its certificate (a renewal is no change): it
    changed when that version is in none of the fact's states (revoked, suspended, cancelled,
    expired), is past its validity, or no longer meets the fact's conditions — those measuring
    time (``withinDays``, ``holder_age``) taken on the day of the grant, so that merely growing
    older or leaving a window is not a change. The reversal names the version that changed."""
    if not gone:
        return []
    used = sorted({f["certificate"] for g in gone for f in g.facts})
    newest = _newest_versions(conn, used)
    c = certificates.c
    rows: dict[str, Any] = {}
    for part in chunks(sorted(set(newest.values()))):
        for r in conn.execute(
            select(c.cert_id, c.holder_id, c.status, c.valid_to, c.leaf_index).where(c.cert_id.in_(part))
        ):
            rows[r[0]] = r
    facts_by_name = {f.name: f for f in rule.facts}
    unmet = _unmet_conditions(conn, rule, gone, newest, rows, district=district)
    out = []
    for g in gone:
        changes, current = [], []
        for f in g.facts:
            version = newest.get(f["certificate"], f["certificate"])
            row = rows.get(version)
            fact = facts_by_name.get(f["fact"])
            states = fact.status if fact is not None else (f["status"],)
            if row is None:
                current.append({**f, "certificate": version, "status": "未找到"})
                changes.append(f"{f['fact']} {version} 未找到")
                continue
            current.append(
                {**f, "certificate": version, "leaf_index": int(row.leaf_index), "status": row.status}
            )
            if row.status not in states:
                changes.append(f"{f['fact']} {version} {_STATE_WORDS.get(row.status, row.status)}")
            elif row.valid_to is not None and row.valid_to < today:
                changes.append(f"{f['fact']} {version} 已过有效期（{row.valid_to.isoformat()}）")
            elif (g.decision_id, f["fact"]) in unmet:
                words = "，".join(rule.describe(c) for c in unmet[(g.decision_id, f["fact"])])
                changes.append(f"{f['fact']} {version} 不再满足：{words}")
        if changes:
            reason = "所依据的证照发生变化，不再满足条件：" + "；".join(changes)
            out.append(Proposed(REVERSAL, tuple(current), reason, g.decision_id, g.subject))
    return out


def _unmet_conditions(
    conn: Connection,
    rule: Rule,
    gone: list[_InForce],
    newest: dict[str, str],
    rows: dict[str, Any],
    *,
    district: str,
) -> dict[tuple[str, str], list[Condition]]:
    """(grant, fact name) -> the fact's conditions the newest version of its certificate no
    longer meets, judged on the day of the grant; one query per fact, day and condition."""
    unmet: dict[tuple[str, str], list[Condition]] = {}
    groups: dict[tuple[str, dt.date], list[tuple[str, str]]] = {}  # (fact, day) -> (grant, version)
    for g in gone:
        for f in g.facts:
            version = newest.get(f["certificate"], f["certificate"])
            if version in rows:
                groups.setdefault((f["fact"], g.decided_on), []).append((g.decision_id, version))
    facts_by_name = {f.name: f for f in rule.facts}
    for (name, day), members in groups.items():
        fact = facts_by_name.get(name)
        if fact is None:
            continue  # a fact of an earlier version of the rule: judged on its state only
        versions = sorted({v for _, v in members})
        for condition in fact.conditions:
            meeting: set[str] = set()
            if condition.field in CATALOG_FIELDS:
                for part in chunks(versions):
                    meeting |= {
                        r[0]
                        for r in conn.execute(
                            select(certificates.c.cert_id).where(
                                and_(
                                    certificates.c.cert_id.in_(part),
                                    _sql_condition(condition, district, day),
                                )
                            )
                        )
                    }
            else:
                table = pa.table(
                    {
                        "holder_id": pa.array([rows[v].holder_id for v in versions], pa.string()),
                        "cert_id": pa.array(versions, pa.string()),
                        "leaf_index": pa.array([int(rows[v].leaf_index) for v in versions], pa.int64()),
                        "status": pa.array([rows[v].status for v in versions], pa.string()),
                    }
                )
                meeting = set(_filter_on_fields(conn, table, [condition], day).column("cert_id").to_pylist())
            for decision_id, version in members:
                if version not in meeting:
                    unmet.setdefault((decision_id, name), []).append(condition)
    return unmet


# ------------------------------------------------------------------ recording


def record(catalog: Catalog, log: TransparencyLog, evaluations: Sequence[Evaluation]) -> list[Recorded]:
    """Log and keep every decision of ``evaluations``: one transaction and checkpoint per rule.

    :class:`DecisionsConflict` if another run recorded a decision of the same rule after the
    evaluation read the decisions (nothing of that rule is then recorded: evaluate again)."""
    recorded: list[Recorded] = []
    for evaluation in evaluations:
        proposed = [*evaluation.grants, *evaluation.reversals]
        if not proposed:
            continue
        rule = evaluation.rule
        now = utcnow()
        ids = [f"{rule.id}-{secrets.token_hex(6)}" for _ in proposed]
        items = [
            Committed(
                KIND_DECISION,
                decision_id,
                decision_document(rule, p, decision_id, evaluation.today),
                p.subject,
            )
            for decision_id, p in zip(ids, proposed, strict=True)
        ]
        with catalog.begin() as conn:
            appended = append_committed_many(conn, log, items)
            # The log head is locked now: a decision of this rule logged since the evaluation
            # read them means another run decided over the same state.
            newest = conn.execute(
                select(func.max(benefit_decisions.c.leaf_index)).where(
                    and_(
                        benefit_decisions.c.rule_id == rule.id,
                        benefit_decisions.c.leaf_index < appended.first_index,
                    )
                )
            ).scalar()
            if (-1 if newest is None else int(newest)) != evaluation.seen_leaf:
                raise DecisionsConflict(
                    f"rule {rule.id}: another run recorded decisions meanwhile; "
                    "nothing was recorded, run again"
                )
            rows = [
                {
                    "decision_id": decision_id,
                    "rule_id": rule.id,
                    "rule_version": rule.version,
                    "result": p.result,
                    "reverses": p.reverses,
                    "reversed_by": None,
                    "facts": list(p.facts),
                    "reason": p.reason,
                    "decided_on": evaluation.today,
                    "decided_at": now,
                    "leaf_index": appended.first_index + at,
                }
                for at, (decision_id, p) in enumerate(zip(ids, proposed, strict=True))
            ]
            conn.execute(insert(benefit_decisions), rows)
            for decision_id, p in zip(ids, proposed, strict=True):
                if p.reverses is not None:
                    conn.execute(
                        update(benefit_decisions)
                        .where(benefit_decisions.c.decision_id == p.reverses)
                        .values(reversed_by=decision_id)
                    )
        recorded += [
            Recorded(decision_id, rule.id, p.result, appended.first_index + at, p.subject_masked, p.reason)
            for at, (decision_id, p) in enumerate(zip(ids, proposed, strict=True))
        ]
    return recorded


def record_evaluating_again(
    catalog: Catalog,
    log: TransparencyLog,
    evaluations: Sequence[Evaluation],
    *,
    district: str,
    attempts: int = 3,
) -> tuple[list[Evaluation], list[Recorded]]:
    """:func:`record` each evaluation; one another run overtook (:class:`DecisionsConflict`) is
    evaluated again on the same day and recorded, up to ``attempts`` times (then the conflict
    is raised: a TransientError, the task retries). The evaluations as recorded, and what was."""
    done: list[Evaluation] = []
    recorded: list[Recorded] = []
    for evaluation in evaluations:
        for attempt in range(1, attempts + 1):
            try:
                recorded += record(catalog, log, [evaluation])
                break
            except DecisionsConflict:
                if attempt == attempts:
                    raise
                with catalog.read() as conn:
                    evaluation = evaluate(conn, evaluation.rule, district=district, today=evaluation.today)
        done.append(evaluation)
    return done, recorded


def decision_document(rule: Rule, proposed: Proposed, decision_id: str, today: dt.date) -> dict[str, Any]:
    """The decision's log entry (before its subject commitment is added): no personal data."""
    return {
        "decision": decision_id,
        "rule": {
            **rule_document(rule),
            "conditions": [
                {
                    "fact": f.name,
                    "type": f.certificate_type,
                    "conditions": [rule.describe(c) for c in f.conditions],
                }
                for f in rule.facts
            ],
        },
        "result": proposed.result,
        "result_name": RESULT_NAMES[proposed.result],
        "grants": rule.grants.model_dump(exclude_none=True),
        "facts": list(proposed.facts),
        "reason": proposed.reason,
        "reverses": proposed.reverses,
        "decided_on": today.isoformat(),
    }


# ------------------------------------------------------------------ reading


@dataclass(frozen=True)
class DecisionRow:
    decision_id: str
    rule_id: str
    rule_version: str
    result: str
    subject_masked: str
    decided_on: dt.date
    leaf_index: int
    reverses: str | None
    reversed_by: str | None


def list_decisions(
    conn: Connection, rule: str | None = None, *, limit: int | None = None
) -> list[DecisionRow]:
    """Decisions, newest first (of one rule, with ``rule``); subjects masked."""
    query = _decisions().order_by(benefit_decisions.c.leaf_index.desc())
    if rule is not None:
        query = query.where(benefit_decisions.c.rule_id == rule)
    if limit is not None:
        query = query.limit(limit)
    return [_decision_row(r) for r in conn.execute(query)]


def _decisions() -> Any:
    """Decisions with their subjects (from ``use_subjects``, by leaf), for :func:`_decision_row`."""
    d = benefit_decisions.c
    return select(
        d.decision_id,
        d.rule_id,
        d.rule_version,
        d.result,
        use_subjects.c.subject_id,
        d.decided_on,
        d.leaf_index,
        d.reverses,
        d.reversed_by,
    ).join(use_subjects, use_subjects.c.leaf_index == d.leaf_index, isouter=True)


def _decision_row(r: Any) -> DecisionRow:
    return DecisionRow(r[0], r[1], r[2], r[3], mask_citizen_id(r[4]) or "", r[5], int(r[6]), r[7], r[8])


@dataclass(frozen=True)
class Explanation:
    row: DecisionRow
    entry: dict[str, Any]  # the logged decision, as the log holds it
    statuses_now: dict[str, str]  # certificate id -> its state today


def explain(conn: Connection, decision_id: str) -> Explanation:
    """Why a decision was made: the logged entry (rule, conditions, facts) and each fact's state now."""
    rows = [r for r in list_decisions_by_id(conn, decision_id)]
    if not rows:
        raise DecisionNotFound(f"no decision {decision_id!r} (see `onceonly decisions list`)")
    row = rows[0]
    entry = json.loads(leaf_at(conn, row.leaf_index).entry or b"{}")
    used = [f["certificate"] for f in entry.get("facts", [])]
    statuses = {
        r[0]: r[1]
        for r in conn.execute(
            select(certificates.c.cert_id, certificates.c.status).where(certificates.c.cert_id.in_(used))
        )
    }
    return Explanation(row, entry, statuses)


def list_decisions_by_id(conn: Connection, decision_id: str) -> list[DecisionRow]:
    """The decision of this id (none or one), subject masked."""
    r = conn.execute(_decisions().where(benefit_decisions.c.decision_id == decision_id)).first()
    return [] if r is None else [_decision_row(r)]


def explain_text(explanation: Explanation) -> str:
    """The explanation in words (Chinese), as a clerk or the citizen reads it."""
    row, entry = explanation.row, explanation.entry
    rule = entry.get("rule", {})
    grants = entry.get("grants", {})
    amount = (
        f" {grants['amount']:g} {grants.get('unit', '元')}"
        if isinstance(grants.get("amount"), int | float)
        else ""
    )
    lines = [
        f"决定编号：{row.decision_id}",
        f"结果：{entry.get('result_name', row.result)}"
        f"（{'享受' if row.result == GRANT else '停止'}：{grants.get('benefit', '')}{amount}）",
        f"政策规则：{rule.get('name', '')}"
        f"（{rule.get('id', row.rule_id)} 第 {rule.get('version', row.rule_version)} 版）",
        f"政策部门：{rule.get('department', '')}",
        f"对象：{row.subject_masked}",
        f"决定日期：{entry.get('decided_on', row.decided_on.isoformat())}",
        "",
        "条件：",
    ]
    for group in rule.get("conditions", []):
        words = "，".join(group.get("conditions", [])) or "有效"
        lines.append(f"  - {group.get('fact')}（{group.get('type')}）：本人持有、在有效期内，{words}")
    lines += ["", "依据的证照："]
    for fact in entry.get("facts", []):
        now = explanation.statuses_now.get(fact["certificate"], "未找到")
        change = "" if now == fact.get("status") else f"（现为：{now}）"
        lines.append(f"  - {fact['fact']} {fact['certificate']}  决定时状态：{fact.get('status')}{change}")
    lines += ["", f"理由：{entry.get('reason', '')}"]
    if row.reverses:
        lines.append(f"撤销的决定：{row.reverses}")
    if row.reversed_by:
        lines.append(f"已被决定 {row.reversed_by} 撤销")
    lines.append(
        f"透明日志：第 {row.leaf_index} 条"
        f"（导出可离线核验：onceonly decisions export {row.decision_id} -o FILE）"
    )
    return "\n".join(lines)


__all__ = [
    "GRANT",
    "RESULT_NAMES",
    "REVERSAL",
    "DecisionNotFound",
    "DecisionRow",
    "DecisionsConflict",
    "Evaluation",
    "Explanation",
    "Proposed",
    "Recorded",
    "decision_document",
    "eligible_subjects",
    "evaluate",
    "explain",
    "explain_text",
    "list_decisions",
    "list_decisions_by_id",
    "record",
    "record_evaluating_again",
    "today_in_district",
]
