"""The verification slip (核验单): what the counter checked, signed, and provable offline.

Example::

    slip = build_slip(conn, log, station, answer, case)      # a signed note (text)
    report = verify_slip(slip, verifiers)                    # offline: VerificationFailed if not
    qr_svg(slip)                                             # the QR code printed on it

The slip is a C2SP signed note signed by the district's log key. Its text is one line of RFC
8785 JSON (``"schema": "onceonly-slip/1"``): station, township, matter, the applicant masked,
purpose (用证事由), case number (受理编号), the time, each material's verdict and certificate
identifier — and the evidence: the signed checkpoint the answer was checked against, and each
use entry the answer logged with its inclusion proof in that checkpoint's tree. ``verify_slip``
needs only the slip and the district's verifier keys: both signatures, every inclusion proof,
and that each 可免交 material has a logged use of that certificate for this case. The QR code
carries the slip's SHA-256 and case number, to match a printed slip with its file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from evidence.canonical import canonical_json
from evidence.log import TransparencyLog, latest_checkpoint, leaf_at, prove_inclusion, read_head
from evidence.merkle import tree_hash, verify_inclusion
from evidence.note import Checkpoint, NoteVerifier, open_note
from evidence.view import LogView
from onceonly.errors import VerificationFailed
from sharing.skipcheck import MAY_SKIP, SkipCheckAnswer
from sharing.stations import Station

SLIP_SCHEMA = "onceonly-slip/1"


def build_slip(
    conn: Connection | None,
    log: TransparencyLog,
    station: Station,
    answer: SkipCheckAnswer,
    *,
    purpose: str,
    case_number: str,
    subject_shown: str,
    view: LogView | None = None,
    head: tuple[int, str] | None = None,
    entries: Mapping[int, bytes] | None = None,
) -> str:
    """The signed slip of ``answer`` (whose uses were logged in ``conn``'s transaction, or —
    with ``view``, a service's verified view of the log — committed and followed by the view:
    the checkpoint and proofs are then the view's, and each use's entry must hash to the leaf
    the view verified; ``head``: the view's size and note to prove against, read once by the
    caller; ``entries``: the uses' entries as the log writer appended them, by leaf, so that
    none is read back — ``conn`` may then be None)."""
    if view is not None:
        size, note = head or view.head
        hasher_name = view.hasher.name
        uses = []
        for index in answer.use_leaves:
            data = (entries or {}).get(index)
            if data is None:
                if conn is None:
                    raise VerificationFailed(f"use leaf {index}: no entry given, no catalog to read it from")
                data = leaf_at(conn, index).entry or b""
            if view.hasher.leaf(data) != view.leaf_hash(index):
                raise VerificationFailed(f"the use entry stored at leaf {index} is not the one the log holds")
            uses.append(
                {
                    "leaf_index": index,
                    "entry": data.decode("utf-8"),
                    "inclusion_proof": [h.hex() for h in view.prove_inclusion(index, size)],
                }
            )
    else:
        if conn is None:
            raise VerificationFailed("a slip without the service's view is proven from the catalog")
        head = latest_checkpoint(conn)
        if head is None:
            raise VerificationFailed("the log has no checkpoint: nothing to check the answer against")
        size, note = head
        hasher_name = read_head(conn).hasher.name
        uses = []
        for index in answer.use_leaves:
            leaf = leaf_at(conn, index)
            uses.append(
                {
                    "leaf_index": index,
                    "entry": (leaf.entry or b"").decode("utf-8"),
                    "inclusion_proof": [h.hex() for h in prove_inclusion(conn, index, size)],
                }
            )
    body = {
        "schema": SLIP_SCHEMA,
        "station": station.station_id,
        "station_name": station.name,
        "township": station.township,
        "matter": answer.matter,
        "matter_name": answer.matter_name,
        "bundle": answer.bundle,
        "subject": subject_shown,
        "purpose": purpose,
        "case_number": case_number,
        "checked_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "hash": hasher_name,
        "materials": [
            {"material": m.material, "verdict": m.verdict, "certificate_id": m.certificate_id}
            for m in answer.materials
        ],
        "checkpoint": note,
        "uses": uses,
    }
    return log.key.sign_note(canonical_json(body).decode("utf-8") + "\n")


@dataclass(frozen=True)
class SlipReport:
    slip: dict[str, Any]
    checkpoint_size: int
    uses: int

    @property
    def summary(self) -> str:
        s = self.slip
        skipped = sum(1 for m in s["materials"] if m["verdict"] == MAY_SKIP)
        return (
            f"{s['matter_name']} ({s['matter']}) for {s['subject']}, case {s['case_number']}, "
            f"{s['station_name']} ({s['township']}) at {s['checked_at']}: {skipped} material(s) 可免交, "
            f"{self.uses} use(s) in the log of size {self.checkpoint_size}"
        )


def verify_slip(slip: str, verifiers: Sequence[NoteVerifier]) -> SlipReport:
    """Check a slip offline; :class:`VerificationFailed` naming the first thing that is wrong."""
    try:
        body = json.loads(open_note(slip, list(verifiers)))
    except VerificationFailed as exc:
        raise VerificationFailed(f"the slip is not signed by the district's key: {exc}") from None
    except ValueError as exc:
        raise VerificationFailed(f"the slip's text is not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("schema") != SLIP_SCHEMA:
        raise VerificationFailed(f"not a {SLIP_SCHEMA} slip")
    try:
        checkpoint = Checkpoint.parse(open_note(str(body["checkpoint"]), list(verifiers)))
    except (VerificationFailed, KeyError) as exc:
        raise VerificationFailed(
            f"the slip's checkpoint is not signed by the district's key: {exc}"
        ) from None
    hasher = tree_hash(str(body.get("hash", "sha256")))
    used: set[str] = set()
    for use in body.get("uses", []):
        entry = str(use["entry"]).encode("utf-8")
        proof = [bytes.fromhex(h) for h in use["inclusion_proof"]]
        try:
            verify_inclusion(
                hasher.leaf(entry),
                int(use["leaf_index"]),
                checkpoint.size,
                proof,
                checkpoint.root_hash,
                hasher=hasher,
            )
        except VerificationFailed as exc:
            raise VerificationFailed(
                f"use entry at leaf {use['leaf_index']} is not in the signed log: {exc}"
            ) from None
        logged = json.loads(entry)
        if logged.get("case_number") != body["case_number"] or logged.get("station") != body["station"]:
            raise VerificationFailed(f"use entry at leaf {use['leaf_index']} is of another case or station")
        used.add(str(logged.get("certificate")))
    for material in body["materials"]:
        if material["verdict"] == MAY_SKIP and material["certificate_id"] not in used:
            raise VerificationFailed(
                f"{material['material']} is 可免交 but the slip carries no logged use of "
                f"{material['certificate_id']}"
            )
    return SlipReport(body, checkpoint.size, len(body.get("uses", [])))


def slip_digest(slip: str) -> str:
    return hashlib.sha256(slip.encode("utf-8")).hexdigest()


def qr_svg(slip: str, case_number: str) -> str:
    """An SVG QR code of the slip's SHA-256 and case number (printed on the slip)."""
    return qr_svg_of(slip_digest(slip), case_number)


def qr_svg_of(sha256: str, case_number: str) -> str:
    """The slip's QR code from its SHA-256 (hex) and case number."""
    import qrcode
    import qrcode.image.svg

    # A fixed mask pattern: choosing the best of eight (qrcode's default) took 2/3 of the time
    # of the whole request; any of them is a valid code, read alike.
    code = qrcode.QRCode(box_size=6, mask_pattern=0, image_factory=qrcode.image.svg.SvgPathImage)
    code.add_data(f"{SLIP_SCHEMA};case={case_number};sha256={sha256}")
    code.make(fit=True)
    return str(code.make_image().to_string(encoding="unicode"))


__all__ = ["SLIP_SCHEMA", "SlipReport", "build_slip", "qr_svg", "qr_svg_of", "slip_digest", "verify_slip"]
