"""Witnesses between districts (互通互认): both sides of c2sp.org/tlog-witness ``add-checkpoint``.

Example::

    # The witness, in another district's home (`onceonly witness serve --config witness.yaml`):
    witness = Witness(cosigner, WitnessState(home / "witness" / "state.db"), load_witness_config(path))
    reply = witness.add_checkpoint(request_body)      # WitnessReply(200, "— w1 …\\n", "text/plain")
    app = create_app(witness)                           # FastAPI: POST /add-checkpoint

    # The log (this district), at the end of each daily run or `onceonly witness submit`:
    for submitted in submit_to_witnesses(catalog, configured_witnesses(settings)):
        print(submitted.witness.label, submitted.cosignature or submitted.error)

**The witness** keeps, per log it is configured for (origin and verifier keys), the size and
root hash of the last checkpoint it cosigned, in a SQLite file. A request is
``old <size>``, up to 63 consistency-proof lines (base64 hashes), an empty line and the log's
signed checkpoint. The witness answers, in this order of checks:

====  =======================================================================================
400   malformed request (old size line, proof lines, note), or ``old`` larger than the
      checkpoint's size (a log may not roll back)
404   the checkpoint's origin is not a log this witness is configured for
403   no signature by a trusted key of that log, or a trusted key's signature does not verify
409   ``old`` is not the size it last cosigned for that log; the body (``Content-Type:
      text/x.tlog.size``) is that size and a newline, so the log retries from it
422   the consistency proof does not verify; a non-empty proof from size 0; the same size with
      another root hash; a tree of size 0 whose root is not the empty tree's
200   the cosignature line(s), after the new size and root are stored
====  =======================================================================================

Checking ``old`` against the stored size and storing the new one happen in one SQLite
transaction that holds the database's write lock from its start (``BEGIN IMMEDIATE``): two
requests, in threads or processes, never both cosign from the same state, so the witness never
cosigns two checkpoints that disagree and never rolls a log back. A refused request whose
signature verified (409, 422) is kept with the reason, as possible proof that the log forked.

**The log** submits its newest checkpoint with a consistency proof from the size the witness
last cosigned (what the catalog's ``checkpoint_cosignatures`` says, else 0), retries once from
the size a 409 names, checks the returned cosignature with the witness's verifier key and only
then stores it. A witness that does not answer is :class:`WitnessUnavailable` (transient); one
that refuses is :class:`WitnessRefused`, naming its status and words. The daily run reports
either as a warning.

The consistency proofs are RFC 6962/9162 with the log's hash: SHA-256, as every witness
expects; a log using SM3 can only be witnessed by a witness configured with ``hash: sm3``
(ours), not by other implementations.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evidence.cosignature import (
    Cosignature,
    CosignatureVerifier,
    Cosigner,
    parse_cosigner_vkey,
)
from evidence.merkle import HASH_SIZE, SHA256, TreeHash, tree_hash, verify_consistency
from evidence.note import (
    Checkpoint,
    NoteSignature,
    NoteVerifier,
    add_signatures,
    open_note_signers,
    parse_vkey,
    split_note,
)
from onceonly.errors import (
    ConfigurationError,
    EvidenceError,
    OnceOnlyError,
    TransientError,
    VerificationFailed,
)
from onceonly.files import PRIVATE_FILE, private_dir, write_atomic

if TYPE_CHECKING:
    import httpx
    from sqlalchemy.engine import Connection

    from catalog import Catalog
    from onceonly.settings import Settings

#: c2sp.org/tlog-witness: a client MUST NOT send more than 63 consistency proof lines.
MAX_PROOF_LINES = 63
#: The largest add-checkpoint body accepted: 63 proof lines and a checkpoint with 100 signatures
#: fit in a fraction of it.
MAX_REQUEST_BYTES = 64 * 1024
#: c2sp.org/tlog-witness: the Content-Type of a 409 Conflict answer.
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_OLD_RE = re.compile(r"old (0|[1-9][0-9]{0,19})")
_MAX_STORED_SIZE = 2**63 - 1  # SQLite integers are signed 64-bit


class WitnessUnavailable(TransientError):
    """A witness did not answer, or answered with a server error: the same submission may work later."""


class WitnessRefused(EvidenceError):
    """A witness refused the checkpoint (or answered with something that is not a valid
    cosignature); ``status`` is its HTTP status, 0 when the answer itself was unusable."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


# ----------------------------------------------------------------------------- the request


@dataclass(frozen=True)
class AddCheckpoint:
    """An add-checkpoint request: the size the client thinks the witness has, a consistency
    proof from it, and the signed checkpoint note."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str

    def to_body(self) -> bytes:
        """The request body (c2sp.org/tlog-witness "add-checkpoint")."""
        lines = [f"old {self.old_size}", *(base64.b64encode(h).decode("ascii") for h in self.proof)]
        return ("".join(f"{line}\n" for line in lines) + "\n" + self.note).encode("utf-8")

    @classmethod
    def parse(cls, body: bytes) -> AddCheckpoint:
        """Parse a request body; :class:`_Refusal` (400) naming what is malformed."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refusal(400, "the request is not UTF-8") from None
        header, blank, note = text.partition("\n\n")
        if not blank:
            raise _Refusal(400, "no empty line between the old size and proof lines and the checkpoint")
        if note.startswith("\n"):
            raise _Refusal(400, "more than one empty line before the checkpoint")
        lines = header.split("\n")
        matched = _OLD_RE.fullmatch(lines[0])
        if matched is None:
            raise _Refusal(
                400, "the first line is not 'old <size>' with the size in decimal without leading zeros"
            )
        proof_lines = lines[1:]
        if len(proof_lines) > MAX_PROOF_LINES:
            raise _Refusal(400, f"{len(proof_lines)} consistency proof lines; at most {MAX_PROOF_LINES}")
        proof = []
        for number, line in enumerate(proof_lines, start=1):
            try:
                value = base64.b64decode(line, validate=True)
            except (binascii.Error, ValueError):
                value = b""
            if len(value) != HASH_SIZE:
                raise _Refusal(
                    400, f"consistency proof line {number} is not the base64 of a {HASH_SIZE}-byte hash"
                )
            proof.append(value)
        return cls(int(matched.group(1)), tuple(proof), note)


@dataclass(frozen=True)
class WitnessReply:
    """What the witness answers: an HTTP status, a text body and its content type."""

    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


class _Refusal(Exception):
    def __init__(self, status: int, reason: str, *, size: int | None = None, evidence: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.size = size
        self.evidence = evidence  # signed by the log: worth keeping (a possible fork)

    def reply(self) -> WitnessReply:
        if self.status == 409:
            return WitnessReply(409, f"{self.size}\n", SIZE_CONTENT_TYPE)
        return WitnessReply(self.status, f"{self.reason}\n")


# ----------------------------------------------------------------------------- the witness


@dataclass(frozen=True)
class WitnessedLog:
    """A log this witness cosigns: its origin line, its trusted verifier keys and its hash."""

    origin: str
    verifiers: tuple[NoteVerifier, ...]
    hasher: TreeHash = SHA256

    @property
    def origin_hash(self) -> str:
        """c2sp.org/tlog-witness: the lower-case hex SHA-256 of the origin, in monitoring URLs."""
        return hashlib.sha256(self.origin.encode("utf-8")).hexdigest()


def load_witness_config(path: Path) -> tuple[WitnessedLog, ...]:
    """The logs a witness cosigns, from its configuration file (YAML or JSON)::

        logs:
          - origin: onceonly.example/baodi/evidence
            keys: ["onceonly.example/baodi/evidence+1a2b3c4d+AQ…"]    # every key that signs it
            hash: sha256                                               # or sm3; default sha256

    Raises :class:`ConfigurationError` naming the file, the entry and what is wrong.
    """
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"cannot read the witness configuration {path}: {exc}") from None
    entries = data.get("logs") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigurationError(f"{path}: 'logs' must be a non-empty list of {{origin, keys}}")
    logs: dict[str, WitnessedLog] = {}
    for number, entry in enumerate(entries, start=1):
        where = f"{path}: logs[{number}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("origin"), str) or not entry["origin"]:
            raise ConfigurationError(f"{where}: needs an 'origin' (the log's checkpoint origin line)")
        unknown = sorted(set(entry) - {"origin", "keys", "key", "hash"})
        if unknown:
            raise ConfigurationError(f"{where}: unknown field(s) {', '.join(unknown)}")
        keys = entry.get("keys", [entry["key"]] if "key" in entry else [])
        if isinstance(keys, str):
            keys = [keys]
        if not isinstance(keys, list) or not keys:
            raise ConfigurationError(f"{where}: needs 'keys', the log's verifier key(s) (vkey form)")
        verifiers = []
        for key in keys:
            try:
                verifiers.append(parse_vkey(key))
            except VerificationFailed as exc:
                raise ConfigurationError(f"{where}: {exc}") from None
        try:
            hasher = tree_hash(str(entry.get("hash", "sha256")))
        except ConfigurationError as exc:
            raise ConfigurationError(f"{where}: {exc}") from None
        origin = entry["origin"]
        if origin in logs:
            raise ConfigurationError(f"{where}: the log {origin!r} is configured twice")
        logs[origin] = WitnessedLog(origin, tuple(verifiers), hasher)
    return tuple(logs.values())


class WitnessState:
    """The witness's memory, a SQLite file: per log origin, the last cosigned size, root hash and
    checkpoint (the log's verified signatures and ours), and the refused requests kept as evidence.

    :meth:`transaction` holds the database's write lock from its first statement, so checking the
    stored size and storing the new one are one atomic step across threads and processes; commits
    are ``synchronous=FULL``: a cosignature is only returned once its state survives a power loss.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        private_dir(self.path.parent)
        with contextlib.closing(self._connect()) as db:
            db.executescript(
                """
                CREATE TABLE IF NOT EXISTS logs (
                    origin TEXT PRIMARY KEY,
                    tree_size INTEGER NOT NULL,
                    root_hash BLOB NOT NULL,
                    checkpoint TEXT NOT NULL,
                    cosigned_at INTEGER NOT NULL
                );
                CREATE TABLE IF NOT EXISTS refusals (
                    id INTEGER PRIMARY KEY,
                    origin TEXT NOT NULL,
                    received_at INTEGER NOT NULL,
                    status INTEGER NOT NULL,
                    reason TEXT NOT NULL,
                    request TEXT NOT NULL
                );
                """
            )
        self.path.chmod(PRIVATE_FILE)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are ours (BEGIN IMMEDIATE), not the module's.
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        db.execute("PRAGMA synchronous = FULL")
        return db

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the lock from the start; committed unless it raises."""
        with contextlib.closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def latest(self, origin: str) -> tuple[int, bytes, str] | None:
        """``(size, root hash, checkpoint)`` last cosigned for ``origin``, or None."""
        with contextlib.closing(self._connect()) as db:
            row = db.execute(
                "SELECT tree_size, root_hash, checkpoint FROM logs WHERE origin = ?", (origin,)
            ).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]), str(row[2]))

    def sizes(self) -> dict[str, int]:
        """The last cosigned size of every log, by origin."""
        with contextlib.closing(self._connect()) as db:
            return {
                str(o): int(s) for o, s in db.execute("SELECT origin, tree_size FROM logs ORDER BY origin")
            }

    def refusals(self, origin: str | None = None) -> list[tuple[str, int, str, str]]:
        """``(origin, status, reason, request)`` of the refused, log-signed requests, oldest first."""
        query = "SELECT origin, status, reason, request FROM refusals"
        params: tuple[str, ...] = ()
        if origin is not None:
            query, params = query + " WHERE origin = ?", (origin,)
        with contextlib.closing(self._connect()) as db:
            return [
                (str(o), int(s), str(r), str(q)) for o, s, r, q in db.execute(query + " ORDER BY id", params)
            ]

    def record_refusal(self, origin: str, status: int, reason: str, request: str, at: int) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO refusals (origin, received_at, status, reason, request) VALUES (?, ?, ?, ?, ?)",
                (origin, at, status, reason, request),
            )


#: Files of a witness's home (``$ONCEONLY_HOME/witness`` by default): its encrypted key (600),
#: its verifier key (public) and its state.
COSIGNER_KEY_FILE = "witness.key.pem"
COSIGNER_VKEY_FILE = "witness.vkey"
STATE_FILE = "state.db"


def create_cosigner(directory: Path, name: str, passphrase: bytes) -> Cosigner:
    """Generate the witness's Ed25519 key ``name``, stored encrypted with ``passphrase`` (PKCS#8,
    mode 600) beside its verifier key; refuses to replace an existing key."""
    directory = Path(directory)
    key_file = directory / COSIGNER_KEY_FILE
    if key_file.exists():
        raise EvidenceError(f"{key_file} already exists; refusing to replace a witness key")
    cosigner = Cosigner.generate(name)
    write_atomic(key_file, cosigner.to_encrypted_pem(passphrase), mode=PRIVATE_FILE)
    write_atomic(directory / COSIGNER_VKEY_FILE, cosigner.vkey + "\n", mode=0o644)
    return cosigner


def load_cosigner(directory: Path, passphrase: bytes) -> Cosigner:
    """The witness's key in ``directory``, checked against its verifier key file."""
    directory = Path(directory)
    try:
        vkey = (directory / COSIGNER_VKEY_FILE).read_text(encoding="ascii").strip()
        pem = (directory / COSIGNER_KEY_FILE).read_bytes()
    except FileNotFoundError as exc:
        raise EvidenceError(
            f"no witness key in {directory} ({Path(exc.filename).name} is missing): "
            "run `onceonly witness init`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EvidenceError(f"cannot read the witness key in {directory}: {exc}") from None
    try:
        verifier = parse_cosigner_vkey(vkey)
    except VerificationFailed as exc:
        raise EvidenceError(f"{directory / COSIGNER_VKEY_FILE}: {exc}") from None
    cosigner = Cosigner.from_encrypted_pem(verifier.name, pem, passphrase)
    if cosigner.vkey != vkey:
        raise EvidenceError(f"{directory / COSIGNER_VKEY_FILE} does not match the witness key beside it")
    return cosigner


class Witness:
    """The witness's side of add-checkpoint (see the module docstring for the answers)."""

    def __init__(
        self, cosigner: Cosigner, state: WitnessState, logs: Iterable[WitnessedLog], *, clock: Any = time.time
    ) -> None:
        self.cosigner = cosigner
        self.state = state
        self.logs = {log.origin: log for log in logs}
        self._clock = clock

    def add_checkpoint(self, body: bytes) -> WitnessReply:
        """Check a request and cosign its checkpoint, or refuse it with the protocol's status."""
        try:
            return WitnessReply(200, "".join(s.line for s in self._add_checkpoint(body)))
        except _Refusal as refusal:
            if refusal.evidence:
                origin = body.decode("utf-8", "replace").partition("\n\n")[2].split("\n", 1)[0]
                self.state.record_refusal(
                    origin,
                    refusal.status,
                    refusal.reason,
                    body.decode("utf-8", "replace"),
                    int(self._clock()),
                )
            return refusal.reply()

    def _add_checkpoint(self, body: bytes) -> list[NoteSignature]:
        if len(body) > MAX_REQUEST_BYTES:
            raise _Refusal(400, f"the request is larger than {MAX_REQUEST_BYTES} bytes")
        request = AddCheckpoint.parse(body)
        try:
            text, _ = split_note(request.note)
        except VerificationFailed as exc:
            raise _Refusal(400, f"the checkpoint is not a signed note: {exc}") from None
        origin = text.split("\n", 1)[0]
        log = self.logs.get(origin)
        if log is None:
            raise _Refusal(404, f"unknown log origin {origin!r}")
        try:
            _, signers = open_note_signers(request.note, log.verifiers)
        except VerificationFailed as exc:
            raise _Refusal(403, f"the checkpoint of {origin}: {exc}") from None
        try:
            checkpoint = Checkpoint.parse(text)
        except VerificationFailed as exc:
            raise _Refusal(400, str(exc)) from None
        if request.old_size > checkpoint.size:
            raise _Refusal(
                400, f"old size {request.old_size} is larger than the checkpoint's size {checkpoint.size}"
            )
        if checkpoint.size > _MAX_STORED_SIZE:
            raise _Refusal(400, "the checkpoint's tree size is beyond what this witness stores (2^63 - 1)")
        with self.state.transaction() as db:
            row = db.execute("SELECT tree_size, root_hash FROM logs WHERE origin = ?", (origin,)).fetchone()
            known_size, known_root = (
                (0, log.hasher.empty_root) if row is None else (int(row[0]), bytes(row[1]))
            )
            if request.old_size != known_size:
                raise _Refusal(
                    409,
                    f"old size {request.old_size}, last cosigned {known_size}",
                    size=known_size,
                    evidence=True,
                )
            self._check_consistency(log, request, checkpoint, known_root)
            cosignature = self.cosigner.cosign(text, int(self._clock()))
            # Kept for monitors: the log's verified signatures and this witness's cosignature.
            trusted = {(v.name, v.key_id) for v in signers}
            kept = [s for s in split_note(request.note)[1] if (s.name, s.key_id) in trusted]
            stored = add_signatures(text + "\n" + "".join(s.line for s in kept), [cosignature])
            db.execute(
                "INSERT INTO logs (origin, tree_size, root_hash, checkpoint, cosigned_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET tree_size = excluded.tree_size, "
                "root_hash = excluded.root_hash, checkpoint = excluded.checkpoint, "
                "cosigned_at = excluded.cosigned_at",
                (origin, checkpoint.size, checkpoint.root_hash, stored, int(self._clock())),
            )
        return [cosignature]

    @staticmethod
    def _check_consistency(
        log: WitnessedLog, request: AddCheckpoint, checkpoint: Checkpoint, known_root: bytes
    ) -> None:
        old, size = request.old_size, checkpoint.size
        if size == 0 and checkpoint.root_hash != log.hasher.empty_root:
            raise _Refusal(422, "a checkpoint of size 0 must have the empty tree's root hash", evidence=True)
        if old == 0 and request.proof:
            raise _Refusal(422, "a consistency proof from size 0 must be empty", evidence=True)
        if old == size and checkpoint.root_hash != known_root:
            raise _Refusal(
                422,
                f"the checkpoint of size {size} has another root hash than the one cosigned",
                evidence=True,
            )
        try:
            verify_consistency(old, size, request.proof, known_root, checkpoint.root_hash, hasher=log.hasher)
        except VerificationFailed as exc:
            raise _Refusal(
                422, f"the consistency proof from size {old} to {size} fails: {exc}", evidence=True
            ) from None

    def latest_checkpoint(self, origin_hash: str) -> WitnessReply:
        """c2sp.org/tlog-witness monitoring: the last cosigned checkpoint of the log whose origin
        hashes to ``origin_hash``, with the log's signatures and this witness's; 404 if none."""
        for log in self.logs.values():
            if log.origin_hash == origin_hash:
                latest = self.state.latest(log.origin)
                if latest is not None:
                    return WitnessReply(200, latest[2])
        return WitnessReply(404, "no checkpoint cosigned for that log\n")


def create_app(witness: Witness) -> Any:
    """The witness as an HTTP service (FastAPI): ``POST /add-checkpoint``, and ``GET
    /<origin hash>/checkpoint`` for monitors. FastAPI is imported here, not with the module."""
    from fastapi import FastAPI
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import Response

    app = FastAPI(
        title="OnceOnly witness (c2sp.org/tlog-witness)", docs_url=None, redoc_url=None, openapi_url=None
    )

    def respond(reply: WitnessReply) -> Response:
        # The Content-Type exactly as given: Starlette would add "; charset=utf-8" to text/x.tlog.size.
        return Response(
            reply.body.encode("utf-8"), status_code=reply.status, headers={"Content-Type": reply.content_type}
        )

    # Plain Starlette routes: the body is read as bytes, no FastAPI parameter parsing in between.
    async def add_checkpoint(request: Request) -> Response:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_REQUEST_BYTES:
                return respond(WitnessReply(413, f"the request is larger than {MAX_REQUEST_BYTES} bytes\n"))
        # SQLite and signing block: off the event loop, so requests for other logs go on.
        return respond(await run_in_threadpool(witness.add_checkpoint, bytes(body)))

    async def checkpoint(request: Request) -> Response:
        origin_hash = str(request.path_params["origin_hash"])
        return respond(await run_in_threadpool(witness.latest_checkpoint, origin_hash))

    app.router.add_route("/add-checkpoint", add_checkpoint, methods=["POST"])
    app.router.add_route("/{origin_hash}/checkpoint", checkpoint, methods=["GET"])
    return app


# ----------------------------------------------------------------------------- the log's side


@dataclass(frozen=True)
class DistrictWitness:
    """A witness the district submits its checkpoints to: its submission URL and verifier key."""

    url: str
    vkey: str
    name: str = ""  # a label for messages; the key's name when empty
    verifier: CosignatureVerifier = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verifier", parse_cosigner_vkey(self.vkey))

    @property
    def label(self) -> str:
        return self.name or self.verifier.name


def parse_witnesses(value: str | None) -> tuple[DistrictWitness, ...]:
    """The district's witnesses from ``ONCEONLY_WITNESSES``: a JSON list of ``{"url", "vkey"[,
    "name"]}``, or the path of a JSON or YAML file holding one. Empty or unset: none."""
    if value is None or not value.strip():
        return ()
    text, where = value, "ONCEONLY_WITNESSES"
    if not value.lstrip().startswith("["):
        path = Path(value.strip())
        try:
            text, where = path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(
                f"ONCEONLY_WITNESSES is neither a JSON list nor a readable file: {path}: {exc}"
            ) from None
    import yaml

    try:
        data = yaml.safe_load(text)  # JSON is YAML
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{where}: not JSON or YAML: {exc}") from None
    if not isinstance(data, list):
        raise ConfigurationError(f'{where}: must be a list of {{"url", "vkey"[, "name"]}}')
    witnesses = []
    for number, entry in enumerate(data, start=1):
        if (
            not isinstance(entry, dict)
            or set(entry) - {"url", "vkey", "name"}
            or not {"url", "vkey"} <= set(entry)
        ):
            raise ConfigurationError(f'{where}: witness {number} must be {{"url", "vkey"[, "name"]}}')
        url = str(entry["url"]).rstrip("/")
        if not re.match(r"https?://", url):
            raise ConfigurationError(f"{where}: witness {number}: the url is not http(s)://…")
        try:
            witnesses.append(DistrictWitness(url, str(entry["vkey"]), str(entry.get("name") or "")))
        except VerificationFailed as exc:
            raise ConfigurationError(f"{where}: witness {number}: {exc}") from None
    labels = [w.verifier.label for w in witnesses]
    if len(set(labels)) != len(labels):
        raise ConfigurationError(f"{where}: a witness key is listed twice")
    return tuple(witnesses)


def configured_witnesses(settings: Settings) -> tuple[DistrictWitness, ...]:
    """The witnesses ``ONCEONLY_WITNESSES`` names (none when unset)."""
    return parse_witnesses(settings.witnesses)


@dataclass(frozen=True)
class Submitted:
    """One witness's outcome for one checkpoint: its cosignature, or why there is none."""

    witness: DistrictWitness
    tree_size: int
    cosignature: Cosignature | None = None
    error: OnceOnlyError | None = None

    @property
    def ok(self) -> bool:
        return self.cosignature is not None


def submit_checkpoint(
    catalog: Catalog, witness: DistrictWitness, *, client: httpx.Client | None = None, timeout: float = 10.0
) -> Submitted:
    """Submit the log's newest checkpoint to ``witness``; keep its checked cosignature and return it
    with the size it cosigned.

    The consistency proof starts at the size the witness last cosigned for us (the catalog's
    record, else 0); a 409 names the witness's size and the request is made once more from it.
    Raises :class:`WitnessUnavailable` (no answer, 5xx) or :class:`WitnessRefused`.
    """
    from evidence.log import latest_checkpoint, prove_consistency

    with catalog.read() as conn:
        head = latest_checkpoint(conn)
        if head is None:
            raise EvidenceError("the transparency log has no checkpoint yet: nothing to witness")
        size, note = head
        old = min(last_cosigned_size(conn, witness.verifier), size)
        proof = prove_consistency(conn, old, size)
    text = split_note(note)[0]
    owned = client is None
    if client is None:
        import httpx

        client = httpx.Client(timeout=timeout)
    try:
        reply = _post(client, witness, AddCheckpoint(old, tuple(proof), note))
        if reply.status_code == 409:
            known = _conflict_size(witness, reply)
            if known > size:
                raise WitnessRefused(
                    f"witness {witness.label} has cosigned a tree of {known} leaves of this log, which has "
                    f"{size}: the log was rolled back or forked, or another log uses its origin and key",
                    409,
                )
            with catalog.read() as conn:
                proof = prove_consistency(conn, known, size)
            reply = _post(client, witness, AddCheckpoint(known, tuple(proof), note))
    finally:
        if owned:
            client.close()
    if reply.status_code != 200:
        words = reply.text.strip()[:300] or reply.reason_phrase
        raise WitnessRefused(
            f"witness {witness.label} refused the checkpoint of size {size}: {reply.status_code} {words}",
            reply.status_code,
        )
    cosignature = _checked_cosignature(witness, text, reply.text)
    with catalog.begin() as conn:
        record_cosignatures(conn, size, [cosignature])
    return Submitted(witness, size, cosignature)


def submit_to_witnesses(
    catalog: Catalog,
    witnesses: Sequence[DistrictWitness],
    *,
    client: httpx.Client | None = None,
    timeout: float = 10.0,
) -> list[Submitted]:
    """:func:`submit_checkpoint` to each witness; a witness that is down or refuses is reported
    in its :class:`Submitted`, never raised, so one witness cannot stop the others."""
    from evidence.log import tree_size

    outcomes = []
    for witness in witnesses:
        with catalog.read() as conn:
            size = tree_size(conn)
        try:
            outcomes.append(submit_checkpoint(catalog, witness, client=client, timeout=timeout))
        except (WitnessUnavailable, WitnessRefused) as exc:
            outcomes.append(Submitted(witness, size, error=exc))
    return outcomes


def _post(client: httpx.Client, witness: DistrictWitness, request: AddCheckpoint) -> httpx.Response:
    import httpx

    url = f"{witness.url}/add-checkpoint"
    try:
        reply = client.post(
            url, content=request.to_body(), headers={"Content-Type": "text/plain; charset=utf-8"}
        )
    except httpx.HTTPError as exc:
        raise WitnessUnavailable(
            f"witness {witness.label} at {witness.url} did not answer: {type(exc).__name__}: {exc}"
        ) from None
    if reply.status_code >= 500:
        raise WitnessUnavailable(f"witness {witness.label} at {witness.url} answered {reply.status_code}")
    return reply


def _conflict_size(witness: DistrictWitness, reply: httpx.Response) -> int:
    kind = reply.headers.get("content-type", "").split(";")[0].strip()
    text = reply.text
    if kind != SIZE_CONTENT_TYPE or not re.fullmatch(r"(0|[1-9][0-9]{0,19})\n", text):
        raise WitnessRefused(
            f"witness {witness.label} answered 409 without a tree size ({SIZE_CONTENT_TYPE}): {text[:100]!r}",
            409,
        )
    return int(text)


def _checked_cosignature(witness: DistrictWitness, text: str, body: str) -> Cosignature:
    """The witness's cosignature among the lines it returned, checked with its key; lines by
    other keys are ignored (c2sp.org/tlog-witness), a bad one by its key is refused."""
    if not body.endswith("\n"):
        raise WitnessRefused(f"witness {witness.label} answered 200 with no signature lines")
    for number, line in enumerate(body[:-1].split("\n"), start=1):
        try:
            signature = NoteSignature.parse(line, number)
        except VerificationFailed as exc:
            raise WitnessRefused(f"witness {witness.label} answered a malformed line: {exc}") from None
        if (signature.name, signature.key_id) == (witness.verifier.name, witness.verifier.key_id):
            try:
                return witness.verifier.verify(text, signature)
            except VerificationFailed as exc:
                raise WitnessRefused(f"witness {witness.label}: {exc}") from None
    raise WitnessRefused(
        f"witness {witness.label} answered with no cosignature by its key {witness.verifier.label}"
    )


# ----------------------------------------------------------------------------- the catalog


def record_cosignatures(conn: Connection, tree_size: int, cosignatures: Iterable[Cosignature]) -> None:
    """Keep checked cosignatures of the checkpoint of ``tree_size`` (a witness's first one stays)."""
    from catalog import checkpoint_cosignatures, insert_missing, utcnow

    for cosignature in cosignatures:
        line = cosignature.signature.line
        insert_missing(
            conn,
            checkpoint_cosignatures,
            {
                "tree_size": tree_size,
                "witness_name": cosignature.witness,
                "key_id": cosignature.key_id.hex(),
                "timestamp": cosignature.timestamp,
                "signature": line.rstrip("\n").rsplit(" ", 1)[1],
                "received_at": utcnow(),
            },
        )


def stored_cosignatures(conn: Connection, tree_size: int) -> list[NoteSignature]:
    """The cosignature lines kept for the checkpoint of ``tree_size``, by witness name and key."""
    from sqlalchemy import select

    from catalog import checkpoint_cosignatures as table

    rows = conn.execute(
        select(table.c.witness_name, table.c.signature)
        .where(table.c.tree_size == tree_size)
        .order_by(table.c.witness_name, table.c.key_id)
    ).all()
    return [NoteSignature.parse(f"\u2014 {row.witness_name} {row.signature}") for row in rows]


def last_cosigned_size(conn: Connection, verifier: CosignatureVerifier) -> int:
    """The largest checkpoint size this witness key cosigned for us (0 if none)."""
    from sqlalchemy import func, select

    from catalog import checkpoint_cosignatures as table

    size = conn.execute(
        select(func.max(table.c.tree_size)).where(
            table.c.witness_name == verifier.name, table.c.key_id == verifier.key_id.hex()
        )
    ).scalar()
    return int(size or 0)


def with_cosignatures(conn: Connection, tree_size: int, note: str) -> str:
    """The checkpoint note of ``tree_size`` with the witnesses' cosignature lines kept for it."""
    lines = stored_cosignatures(conn, tree_size)
    return add_signatures(note, lines) if lines else note


def witness_summary(submitted: Submitted) -> str:
    """One line saying what a witness did with the checkpoint (for logs and the command line)."""
    if submitted.cosignature is not None:
        return (
            f"witness {submitted.witness.label} cosigned the checkpoint of size {submitted.tree_size} "
            f"at {submitted.cosignature.time.isoformat().replace('+00:00', 'Z')}"
        )
    return str(submitted.error)


__all__ = [
    "COSIGNER_KEY_FILE",
    "COSIGNER_VKEY_FILE",
    "MAX_PROOF_LINES",
    "MAX_REQUEST_BYTES",
    "SIZE_CONTENT_TYPE",
    "STATE_FILE",
    "AddCheckpoint",
    "DistrictWitness",
    "Submitted",
    "Witness",
    "WitnessRefused",
    "WitnessReply",
    "WitnessState",
    "WitnessUnavailable",
    "WitnessedLog",
    "configured_witnesses",
    "create_app",
    "create_cosigner",
    "last_cosigned_size",
    "load_cosigner",
    "load_witness_config",
    "parse_witnesses",
    "record_cosignatures",
    "stored_cosignatures",
    "submit_checkpoint",
    "submit_to_witnesses",
    "with_cosignatures",
    "witness_summary",
]
