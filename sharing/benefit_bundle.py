"""A decision bundle: one 免申即享 decision, provable offline with the district's verifier keys.

Example::

    bundle = export_decision(conn, log, "gaoling-jintie-3f9a2c1e0b7d")   # a signed note (text)
    report = verify_decision(bundle, verifiers)      # offline: VerificationFailed naming what is wrong
    report.entry["rule"]["name"], report.checkpoint_size

The bundle is a C2SP signed note signed by the district's log key (like the counter's slip,
``sharing.slip``). Its text is one line of RFC 8785 JSON (``"schema":
"onceonly-benefit-decision-bundle/1"``): the decision's log entry as logged, its leaf index,
the inclusion proof of that leaf in the tree of a signed checkpoint, the checkpoint, the log's
hash and the subject masked — and, with ``with_subject``, the opening of the entry's subject
commitment (the subject's ID number and salt: personal data, for the citizen's own copy).
``verify_decision`` needs only the bundle and the verifier keys; it checks, in order, and names
the first that fails: the bundle's form, the checkpoint's signature, the entry (a decision, the
one named), its inclusion proof, the subject opening if any, and the bundle's own signature.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from catalog import use_subjects
from evidence.canonical import canonical_json
from evidence.commitment import subject_commitment
from evidence.log import (
    KIND_DECISION,
    TransparencyLog,
    latest_checkpoint,
    leaf_at,
    prove_inclusion,
    read_head,
)
from evidence.merkle import tree_hash, verify_inclusion
from evidence.note import Checkpoint, NoteVerifier, open_note, split_note
from onceonly.errors import ConfigurationError, VerificationFailed
from onceonly.privacy import mask_citizen_id
from sharing.benefit_decisions import DecisionNotFound, list_decisions_by_id

BUNDLE_SCHEMA = "onceonly-benefit-decision-bundle/1"


def export_decision(
    conn: Connection, log: TransparencyLog, decision_id: str, *, with_subject: bool = False
) -> str:
    """The signed bundle of decision ``decision_id`` against the newest checkpoint."""
    rows = list_decisions_by_id(conn, decision_id)
    if not rows:
        raise DecisionNotFound(f"no decision {decision_id!r} (see `onceonly decisions list`)")
    row = rows[0]
    head = latest_checkpoint(conn)
    if head is None or head[0] <= row.leaf_index:
        raise VerificationFailed(f"no signed checkpoint covers decision {decision_id} yet")
    size, note = head
    entry = leaf_at(conn, row.leaf_index).entry or b""
    body: dict[str, Any] = {
        "schema": BUNDLE_SCHEMA,
        "decision": decision_id,
        "subject": row.subject_masked,
        "leaf_index": row.leaf_index,
        "entry": entry.decode("utf-8"),
        "hash": read_head(conn).hasher.name,
        "checkpoint": note,
        "inclusion_proof": [h.hex() for h in prove_inclusion(conn, row.leaf_index, size)],
    }
    if with_subject:
        kept = conn.execute(
            select(use_subjects.c.subject_id, use_subjects.c.salt).where(
                use_subjects.c.leaf_index == row.leaf_index
            )
        ).first()
        if kept is None:
            raise ConfigurationError(
                f"decision {decision_id}: its subject's opening is not kept in this catalog"
            )
        body["opening"] = {"subject": kept[0], "salt": bytes(kept[1]).hex()}
    return log.key.sign_note(canonical_json(body).decode("utf-8") + "\n")


@dataclass(frozen=True)
class DecisionReport:
    decision: str
    subject: str  # masked
    entry: dict[str, Any]
    checkpoint_size: int
    opened: bool  # the bundle carried the subject's opening, and it opens the commitment

    @property
    def summary(self) -> str:
        rule = self.entry.get("rule", {})
        return (
            f"决定 {self.decision}：{rule.get('name', '')}"
            f"（{rule.get('id', '')} {rule.get('version', '')}），"
            f"{self.entry.get('result_name', self.entry.get('result', ''))}，对象 {self.subject}，"
            f"{self.entry.get('decided_on', '')}；在规模 {self.checkpoint_size} 的签名日志中"
            + ("；对象身份已核对" if self.opened else "")
        )


def verify_decision(bundle: str, verifiers: Sequence[NoteVerifier]) -> DecisionReport:
    """Check a decision bundle offline; :class:`VerificationFailed` naming the first problem."""
    try:
        text, _ = split_note(bundle)
        body = json.loads(text)
    except VerificationFailed as exc:
        raise VerificationFailed(f"the bundle is not a signed note: {exc}") from None
    except ValueError as exc:
        raise VerificationFailed(f"the bundle's text is not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("schema") != BUNDLE_SCHEMA:
        raise VerificationFailed(f"not a {BUNDLE_SCHEMA} bundle")
    try:
        checkpoint = Checkpoint.parse(open_note(str(body["checkpoint"]), list(verifiers)))
    except (VerificationFailed, KeyError) as exc:
        raise VerificationFailed(
            f"the bundle's checkpoint is not signed by the district's key: {exc}"
        ) from None
    try:
        hasher = tree_hash(str(body.get("hash", "sha256")))
        entry_bytes = str(body["entry"]).encode("utf-8")
        index = int(body["leaf_index"])
        proof = [bytes.fromhex(h) for h in body["inclusion_proof"]]
    except (KeyError, TypeError, ValueError, ConfigurationError) as exc:
        raise VerificationFailed(f"the bundle lacks or garbles a part: {exc}") from None
    try:
        entry = json.loads(entry_bytes)
    except ValueError as exc:
        raise VerificationFailed(f"the decision entry is not JSON: {exc}") from None
    if not isinstance(entry, dict) or entry.get("kind") != KIND_DECISION:
        raise VerificationFailed(f"the entry at leaf {index} is not a {KIND_DECISION} entry")
    if entry.get("decision") != body.get("decision"):
        raise VerificationFailed(
            f"the entry at leaf {index} is decision {entry.get('decision')!r}, not {body.get('decision')!r}"
        )
    try:
        verify_inclusion(
            hasher.leaf(entry_bytes), index, checkpoint.size, proof, checkpoint.root_hash, hasher=hasher
        )
    except VerificationFailed as exc:
        raise VerificationFailed(
            f"the decision entry at leaf {index} is not in the signed log (entry or proof changed?): {exc}"
        ) from None
    opened = False
    if "opening" in body:
        opening = body["opening"]
        try:
            digest = subject_commitment(bytes.fromhex(str(opening["salt"])), str(opening["subject"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise VerificationFailed(f"the bundle's subject opening is garbled: {exc}") from None
        if digest != entry.get("subject_commitment"):
            raise VerificationFailed("the subject opening does not open the decision's subject commitment")
        if mask_citizen_id(str(opening["subject"])) != body.get("subject"):
            raise VerificationFailed("the masked subject shown is not the subject the opening names")
        opened = True
    try:
        open_note(bundle, list(verifiers))
    except VerificationFailed as exc:
        raise VerificationFailed(
            f"the bundle's own signature does not verify (changed after export?): {exc}"
        ) from None
    return DecisionReport(str(body["decision"]), str(body.get("subject", "")), entry, checkpoint.size, opened)


__all__ = ["BUNDLE_SCHEMA", "DecisionReport", "export_decision", "verify_decision"]
