"""The catalog's tables: cursors, runs, batches, quarantine, certificates and the log.

Example::

    from catalog import certificates, metadata
    select(certificates.c.cert_id).where(certificates.c.holder_id == holder)

Everything a batch changes is written in ONE transaction (``lake.landing``): the batch row, its
quarantine rows, its certificates, their log leaves, the signed checkpoint and the connector's
new cursor. A run that dies leaves the catalog exactly as the last landed batch left it.

Changing a table is a migration: the change here, ``SCHEMA_REVISION`` set to the new revision,
and one new file in ``catalog/migrations/versions/`` (see ``catalog._migrations``).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# The schema revision these tables are: the newest migration in catalog/migrations/versions/.
# A catalog at another revision is refused when opened (`onceonly catalog upgrade`).
SCHEMA_REVISION = "0012"

metadata = MetaData()

# A 64-bit key that is SQLite's rowid (only "INTEGER PRIMARY KEY" is), BIGINT elsewhere.
_ROWID_BIGINT = BigInteger().with_variant(Integer(), "sqlite")

connector_state = Table(
    "connector_state",
    metadata,
    Column("connector", String(100), primary_key=True),
    Column("dataset", String(100), nullable=False),
    Column("cursor", JSON, nullable=True),
    Column("last_run_id", String(36)),
    Column("last_status", String(20)),
    Column("last_error", Text),
    Column("last_pull_at", DateTime(timezone=True)),
    Column("rows_pulled", BigInteger, nullable=False, default=0),
    # One run pulls a connector at a time: the run holding the lease until lease_until.
    Column("lease_run_id", String(36)),
    Column("lease_until", DateTime(timezone=True)),
)

township_extracts = Table(
    "township_extracts",
    metadata,
    Column("township", String(12), primary_key=True),
    # Bumped in the landing transaction whenever a certificate of the township is issued or
    # superseded; the extract writer clears only the generation it wrote, so a township that
    # changes while its extract is being written stays marked.
    Column("generation", BigInteger, nullable=False, default=0),
    Column("written_generation", BigInteger, nullable=False, default=0),
    Column("written_at", DateTime(timezone=True)),
)

# One row per run of the daily flow. ``run_id`` is the Prefect flow-run id, so an operator goes
# from a catalog row to the run's page in the Prefect UI. A run that is still ``running`` but
# whose process is gone (same host: ``host`` and ``pid`` with ``process_start``, which tells a
# reused pid apart) or whose ``heartbeat_at`` is stale (another host) is marked ``crashed`` by
# the next run (lake.runs), which then takes over the connectors it held.
runs = Table(
    "runs",
    metadata,
    Column("run_id", String(36), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("status", String(20), nullable=False),
    Column("summary", JSON),
    Column("host", String(255)),
    Column("pid", Integer),
    Column("process_start", BigInteger),
    Column("heartbeat_at", DateTime(timezone=True)),
    Column("heartbeat_seconds", Float),
)

batches = Table(
    "batches",
    metadata,
    Column("batch_id", String(64), primary_key=True),
    Column("run_id", String(36), nullable=False),
    Column("connector", String(100), nullable=False),
    Column("dataset", String(100), nullable=False),
    Column("contract_id", String(200), nullable=False),
    Column("contract_version", String(40), nullable=False),
    Column("pulled", Integer, nullable=False),
    Column("accepted", Integer, nullable=False),
    Column("quarantined", Integer, nullable=False),
    Column("warnings", Integer, nullable=False),
    Column("certificates", Integer, nullable=False),
    Column("cursor_before", JSON),
    Column("cursor_after", JSON),
    Column("content_sha256", String(64), nullable=False),
    Column("tree_size", BigInteger),
    Column("landed_at", DateTime(timezone=True), nullable=False),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", String(64), nullable=False),
    Column("dataset", String(100), nullable=False),
    Column("contract_id", String(200), nullable=False),
    Column("contract_version", String(40), nullable=False),
    Column("record_key", String(200)),
    Column("subject_id", String(64)),
    Column("rule", String(200), nullable=False),
    Column("column", String(100)),
    Column("severity", String(10), nullable=False),
    Column("value_masked", Text),
    Column("detected_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True)),
    Column("resolved_by_batch", String(64)),
    Index("ix_quarantine_subject", "subject_id"),
    Index("ix_quarantine_key", "dataset", "record_key"),
)

# A batch refused because its error rate passed the contract's maxErrorRate: nothing from it
# was landed or issued and the connector's cursor stayed put, but its failing rows are in
# ``quarantine`` under this batch id (once, however often the same batch is pulled again).
breaches = Table(
    "breaches",
    metadata,
    Column("batch_id", String(64), primary_key=True),
    Column("run_id", String(36), nullable=False),
    Column("connector", String(100), nullable=False),
    Column("dataset", String(100), nullable=False),
    Column("contract_id", String(200), nullable=False),
    Column("contract_version", String(40), nullable=False),
    Column("pulled", Integer, nullable=False),
    Column("quarantined", Integer, nullable=False),
    Column("error_rate", Float, nullable=False),
    Column("max_error_rate", Float, nullable=False),
    Column("detected_at", DateTime(timezone=True), nullable=False),
)

# Keyed by leaf index (SQLite's rowid): certificates are appended in log order, so the table
# itself grows at its end and no separate leaf-index B-tree is written; the id is unique.
# Indexes, each for a query that needs it: cert_id (bundles, lifecycle, supersession),
# (dataset, record_key, holder_id, version) (earlier versions at landing; nothing doubled),
# holder_id (skip-check), township (extracts, in leaf order), previous_id (superseded?).
certificates = Table(
    "certificates",
    metadata,
    Column("cert_id", String(120), nullable=False, unique=True),
    Column("dataset", String(100), nullable=False),
    Column("record_key", String(200), nullable=False),
    Column("holder_id", String(64), nullable=False),
    Column("holder_name", Text),  # as long as the contract allows (a company name: 200)
    Column("type_code", String(40), nullable=False),
    Column("type_name", String(100), nullable=False),
    Column("issuer_code", String(18), nullable=False),
    Column("serial", BigInteger, nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(10), nullable=False),
    Column("issue_date", Date, nullable=False),
    Column("valid_from", Date),
    Column("valid_to", Date),
    Column("township", String(12)),
    Column("content_sha256", String(64), nullable=False),
    # The certificate's RFC 8785 bytes are its log leaf's entry (log_bundles; evidence.log.leaf_at).
    Column("leaf_index", _ROWID_BIGINT, primary_key=True, autoincrement=False),
    Column("batch_id", String(64), nullable=False),
    Column("previous_id", String(120)),
    # The certificate's status-list entry (its credential_status: issuer_code, list_no,
    # status_index), kept here rather than in a table of its own: one row and no cert_id key
    # written twice per certificate. Allocation (evidence.status_list.allocate_positions,
    # under the list's row lock) hands each position out once. ix_certificates_not_valid
    # (below) serves publishing a list: only certificates not 有效 set a bit.
    Column("list_no", Integer),
    Column("status_index", BigInteger),
    UniqueConstraint("dataset", "record_key", "holder_id", "version", name="uq_certificate_version"),
    Index("ix_certificates_holder", "holder_id"),
    Index("ix_certificates_township", "township"),
)

# The certificates whose status-list bits are set (evidence.status_list.build_document): those
# not 有效. Partial where the database has them, so that issuing a 有效 certificate writes no
# entry here (a full (issuer, list) index cost ~1 us per certificate issued).
Index(
    "ix_certificates_not_valid",
    certificates.c.issuer_code,
    certificates.c.list_no,
    sqlite_where=certificates.c.status != "有效",
    postgresql_where=certificates.c.status != "有效",
)

serials = Table(
    "serials",
    metadata,
    Column("type_code", String(40), primary_key=True),
    Column("issuer_code", String(18), primary_key=True),
    Column("next_serial", BigInteger, nullable=False),
)

log_head = Table(
    "log_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tree_size", BigInteger, nullable=False),
    Column("frontier", JSON, nullable=False),
    # The log's hash function (sha256, or sm3 as a deployment option), fixed by its first
    # append: a log never mixes two.
    Column("hash_alg", String(10), nullable=False, server_default="sha256"),
)

log_leaves = Table(
    "log_leaves",
    metadata,
    # INTEGER on SQLite, so that the key is the rowid: no second B-tree to write per leaf.
    Column("leaf_index", _ROWID_BIGINT, primary_key=True, autoincrement=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("ref", String(120), nullable=False),
    Column("appended_at", DateTime(timezone=True), nullable=False),
    # The entry itself (batch receipts, uses of shared data, lifecycle changes, status lists).
    Column("entry", LargeBinary),
    # The newest leaf of a kind for a ref (a status list, a certificate's lifecycle): a skip-check
    # reads the newest status-list leaf of a list, so an older signed list put back is refused.
    Index("ix_log_leaves_kind_ref", "kind", "ref"),
)

# Certificate leaves, the bulk of the log, packed: one row per run of up to BUNDLE_LEAVES
# consecutive certificate leaves of one append (after C2SP tlog-tiles' entry bundles). A row
# holds the leaves' hashes (32 bytes each, raw, read by proofs without touching the entries)
# and their entries: an Arrow IPC stream, LZ4-compressed, of ``ref`` (the certificate id) and
# ``entry`` (its RFC 8785 bytes). A row per leaf cost more than everything else issuance writes.
BUNDLE_LEAVES = 256
log_bundles = Table(
    "log_bundles",
    metadata,
    Column("first_leaf", _ROWID_BIGINT, primary_key=True, autoincrement=False),
    Column("leaf_count", Integer, nullable=False),
    Column("leaf_hashes", LargeBinary(2**32 - 1), nullable=False),
    Column("entries", LargeBinary(2**32 - 1), nullable=False),
    Column("appended_at", DateTime(timezone=True), nullable=False),
)

# The openings of the certificate leaves in log_bundles, packed alike (first_leaf, leaf_count
# as the bundle's): per certificate its id, its 16-byte salt and its RFC 8785 bytes (holder name
# and ID number included) as an LZ4-compressed Arrow IPC stream. The log entry is only a
# commitment to certificate and salt (evidence.commitment); this table is what a bundle's
# opening and the audit read. Private: never published, not part of the tree.
certificate_openings = Table(
    "certificate_openings",
    metadata,
    Column("first_leaf", _ROWID_BIGINT, primary_key=True, autoincrement=False),
    Column("leaf_count", Integer, nullable=False),
    Column("openings", LargeBinary(2**32 - 1), nullable=False),
)

# The subjects of use entries (kind ``use``): the entry commits to the subject (its ID number
# or USCC) under this salt, so a citizen can be shown, and can prove, every use of their data
# while the published log names nobody. Private, like the openings above.
use_subjects = Table(
    "use_subjects",
    metadata,
    Column("leaf_index", _ROWID_BIGINT, primary_key=True, autoincrement=False),
    Column("subject_id", String(64), nullable=False),
    Column("salt", LargeBinary(16), nullable=False),
    Index("ix_use_subjects_subject", "subject_id"),
)

# The complete interior nodes of the log's tree from level 4 up, written with the leaves that
# complete them: node (level, index) is MTH(D[index * 2**level : (index + 1) * 2**level]),
# stored under node_id = level * 2**48 + index (evidence.log.node_id), one integer key (the
# rowid on SQLite). Nodes of levels 1-3 (7 of every 8) are not stored: a proof rebuilds one
# from at most 8 leaf hashes. Any RFC 9162 proof reads O(log n) rows.
log_nodes = Table(
    "log_nodes",
    metadata,
    Column("node_id", _ROWID_BIGINT, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Cosignatures of checkpoints by the district's witnesses (c2sp.org/tlog-cosignature), kept
# as received after checking them with the witness's key: ``signature`` is the base64 of the
# signature line (key ID || timestamp || Ed25519 signature), so the line is
# "— <witness_name> <signature>". Bundles carry them as extra signature lines of the checkpoint.
checkpoint_cosignatures = Table(
    "checkpoint_cosignatures",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("witness_name", String(255), primary_key=True),
    Column("key_id", String(8), primary_key=True),  # 8 lower-case hex digits
    Column("timestamp", BigInteger, nullable=False),  # POSIX seconds, as the witness signed it
    Column("signature", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

# Township and village service stations (`onceonly stations add`): each has a credential,
# stored as the SHA-256 of a 32-byte random token (the token is shown once, never kept), scoped
# to one township and, when ``matters`` is set (a JSON list of codes), to those matters only.
stations = Table(
    "stations",
    metadata,
    Column("station_id", String(40), primary_key=True),
    Column("name", Text, nullable=False),
    Column("township", String(12), nullable=False),
    Column("matters", Text),  # JSON list of matter or bundle codes; NULL: every matter
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)

# Citizens who may see the uses of their data and grant consents (`onceonly citizens enrol`,
# after the counter has checked their identity): a credential per citizen, stored as SHA-256.
citizens = Table(
    "citizens",
    metadata,
    Column("citizen_id", String(40), primary_key=True),
    Column("subject_id", String(64), nullable=False, unique=True),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)

# Consents for 跨域通办 (sharing.citizens): a citizen lets a station of ``township`` ask about
# them for one matter and one purpose until ``expires_at``, once. The short code the citizen
# reads out is stored as SHA-256; the consent is logged (kind ``consent``, the subject committed).
consents = Table(
    "consents",
    metadata,
    Column("code_sha256", String(64), primary_key=True),
    Column("subject_id", String(64), nullable=False),
    Column("township", String(12), nullable=False),
    Column("matter", String(64), nullable=False),
    Column("purpose", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    Column("used_by", String(40)),
    Column("leaf_index", BigInteger, nullable=False),
)

# Connectors registered by departments (`onceonly connectors register FILE`): the registration
# file's text as written (secret NAMES only), so the daily flow runs what was registered.
connector_registrations = Table(
    "connector_registrations",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("type", String(50), nullable=False),
    Column("dataset", String(100), nullable=False),
    Column("department", String(200), nullable=False),
    Column("yaml_text", Text, nullable=False),
    Column("registered_at", DateTime(timezone=True), nullable=False),
    Column("removed_at", DateTime(timezone=True)),  # NULL: active
)

# A newer version names the one it supersedes: "is this certificate superseded?" is a lookup.
# Partial where the database has them: first versions (most certificates) write no entry.
Index(
    "ix_certificates_previous",
    certificates.c.previous_id,
    sqlite_where=certificates.c.previous_id.is_not(None),
    postgresql_where=certificates.c.previous_id.is_not(None),
)

# W3C Bitstring Status List, per issuer: each list has a fixed number of entries handed out
# in the random order of ``permutation`` (uint32 little-endian), so an index says nothing
# about when a certificate was issued. The newest signed, logged publication is kept here.
status_lists = Table(
    "status_lists",
    metadata,
    Column("issuer_code", String(18), primary_key=True),
    Column("list_no", Integer, primary_key=True, autoincrement=False),
    Column("next_slot", BigInteger, nullable=False),
    Column("permutation", LargeBinary(4 * 131_072), nullable=False),  # MariaDB: a MEDIUMBLOB
    Column("document", Text),  # RFC 8785 JSON of the newest published list
    Column("signature", Text),  # signed note over its SHA-256
    Column("leaf_index", BigInteger),  # its transparency-log leaf
    Column("published_at", DateTime(timezone=True)),
)

# Lifecycle changes (暂扣, 暂扣发还, 撤销, 吊销, 注销, 失效): the log has the signed history,
# this table the readable one; ``certificates.status`` holds the current state.
certificate_events = Table(
    "certificate_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cert_id", String(120), nullable=False),
    Column("action", String(20), nullable=False),
    Column("status_before", String(10), nullable=False),
    Column("status_after", String(10), nullable=False),
    Column("reason", Text, nullable=False),
    Column("leaf_index", BigInteger, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Index("ix_certificate_events_cert", "cert_id"),
    # 0012: the lifecycle changes since a log position (a township's increment, sharing.extracts)
    Index("ix_certificate_events_leaf", "leaf_index"),
)

# --- 0007: township extracts (sharing.extracts) ---

# Every township extract written (sharing.extracts), numbered per township from 1: a full
# snapshot or the changes since the one before (``previous_no``), the checkpoint it reflects, its
# signed manifest (a C2SP signed note; ``manifest_sha256`` is what its log entry, kind
# ``extract-manifest``, names) and where its files are, relative to the extracts folder.
extract_manifests = Table(
    "extract_manifests",
    metadata,
    Column("township", String(12), primary_key=True),
    Column("extract_no", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(12), nullable=False),  # full | incremental
    Column("previous_no", BigInteger),
    Column("generation", BigInteger, nullable=False),  # township_extracts.generation it wrote
    Column("tree_size", BigInteger, nullable=False),  # the checkpoint it reflects
    Column("path", String(200), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("changes", JSON, nullable=False),  # {"new": n, "changed": n, "revoked": n, ...}
    Column("manifest_sha256", String(64), nullable=False),
    Column("manifest", Text, nullable=False),
    Column("leaf_index", BigInteger, nullable=False),
    Column("written_at", DateTime(timezone=True), nullable=False),
)

# What each township was last sent, per certificate: the SHA-256 of the row as written (masked
# as the manifest says), so the next extract carries exactly what changed since — and a
# certificate no longer the township's is sent as removed.
extract_rows = Table(
    "extract_rows",
    metadata,
    Column("township", String(12), primary_key=True),
    Column("cert_id", String(120), primary_key=True),
    Column("content_sha256", String(64), nullable=False),
)

# --- 0008: benefit decisions (sharing.benefits) ---

# 免申即享 decisions (sharing.benefit_decisions): one row per decision logged (kind
# ``benefit-decision``), a grant or the reversal of one. The subject is not here: the log entry
# commits to it, and ``use_subjects`` (keyed by the same leaf) keeps the subject and the salt,
# so the citizen's list of uses of their data shows the decision too. A grant in force has no
# ``reversed_by``; a reversal names the grant it ends in ``reverses``.
benefit_decisions = Table(
    "benefit_decisions",
    metadata,
    Column("decision_id", String(100), primary_key=True),
    Column("rule_id", String(64), nullable=False),
    Column("rule_version", String(40), nullable=False),
    Column("result", String(10), nullable=False),  # grant | reversal
    Column("reverses", String(100)),
    Column("reversed_by", String(100)),
    Column("facts", JSON, nullable=False),  # [{fact, certificate, type, status, leaf_index}]
    Column("reason", Text, nullable=False),
    Column("decided_on", Date, nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("leaf_index", BigInteger, nullable=False, unique=True),
    Index("ix_benefit_decisions_rule", "rule_id", "result"),
)

# --- 0009: approvals pushed to supervision (sharing.supervision) ---

# 审管联动: each landed approval (permit decision) pushed to its supervising department, by its
# id (the push's idempotency key): the attempts, the supervisor's case once accepted (and the log
# leaf recording the push), its read receipt and feedback (监管结果), and when an overdue event
# was raised for it (once: a run finding it still overdue raises nothing again).
supervision_pushes = Table(
    "supervision_pushes",
    metadata,
    Column("approval_id", String(40), primary_key=True),
    Column("supervisor", String(200), nullable=False),
    Column("licence_no", String(40)),
    Column("applicant_uscc", String(18)),
    Column("applicant_name", Text),
    Column("township", String(12)),
    Column("decided_on", Date),
    Column("body_sha256", String(64)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("first_tried_at", DateTime(timezone=True), nullable=False),
    Column("pushed_at", DateTime(timezone=True)),  # NULL: not yet accepted by the supervisor
    Column("case_id", String(64)),
    Column("leaf_index", BigInteger),
    Column("read_at", DateTime(timezone=True)),
    Column("feedback_at", DateTime(timezone=True)),
    Column("feedback_result", Text),
    Column("unread_alerted_at", DateTime(timezone=True)),
    Column("feedback_alerted_at", DateTime(timezone=True)),
    Index("ix_supervision_pushes_pushed_at", "pushed_at"),
)

# The receipts pulled back from a supervisor (read, feedback), each once by its id whatever the
# supervisor sends again; ``seq`` is the supervisor's own order, the next pull asks after the last.
# A receipt whose approval's push is not recorded here yet (a run died between push and record,
# two runs overlapping) is kept all the same and applied when the push is recorded.
supervision_receipts = Table(
    "supervision_receipts",
    metadata,
    Column("receipt_id", String(64), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("approval_id", String(40), nullable=False),  # no foreign key: kept before its push is
    Column("case_id", String(64), nullable=False),  # recorded (held, ``leaf_index`` NULL) too
    Column("kind", String(20), nullable=False),  # read | feedback
    Column("at", DateTime(timezone=True), nullable=False),
    Column("result", Text),  # the 监管结果 scrubbed and cut (sharing.supervision.MAX_RESULT)
    Column("result_sha256", String(64)),  # of the result as sent: what the log entry carries
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("leaf_index", BigInteger),  # NULL: held until its approval's push is recorded
    Index("ix_supervision_receipts_approval", "approval_id"),
)

# --- 0010: expiry reminders (sharing.reminders) ---

# 证照到期提醒 (sharing.reminders): one row per reminder sent — a certificate's lineage (dataset,
# record, holder: the versions of one certificate), the valid_to it is about and the window
# (days before valid_to) it was sent for. ``reminder_id`` is the SHA-256 of those, so the same
# reminder is never sent twice (a second run that day or the next, a new version with the same
# valid_to). ``status`` 待换证 until a certificate of the lineage with a later valid_to lands
# (已换证, ``closed_by`` its id), valid_to passes (已到期) or none of it is 有效 (已失效).
expiry_reminders = Table(
    "expiry_reminders",
    metadata,
    Column("reminder_id", String(64), primary_key=True),
    Column("cert_id", String(120), nullable=False),
    Column("dataset", String(100), nullable=False),
    Column("record_key", String(200), nullable=False),
    Column("holder_id", String(64), nullable=False),
    Column("type_code", String(40), nullable=False),
    Column("township", String(12)),
    Column("valid_to", Date, nullable=False),
    Column("window_days", Integer, nullable=False),
    Column("sent_on", Date, nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=False),
    Column("leaf_index", BigInteger, nullable=False),
    Column("notice_id", String(32), nullable=False),
    Column("status", String(10), nullable=False),
    Column("closed_on", Date),
    Column("closed_by", String(120)),
    Column("closed_leaf", BigInteger),
    Index("ix_expiry_reminders_lineage", "dataset", "record_key", "holder_id"),
    Index("ix_expiry_reminders_status", "status"),
)

# The outbox of notices to subjects (one per subject per run, listing the certificates reminded):
# a messaging gateway (政务短信平台, the 津心办 message centre) takes the rows with no
# ``delivered_at`` — or the day's notices.jsonl — and reports each delivered (mark_delivered).
# ``subject_id`` is the address the gateway resolves; private, like the catalog's certificates.
expiry_notices = Table(
    "expiry_notices",
    metadata,
    Column("notice_id", String(32), primary_key=True),
    Column("subject_id", String(64), nullable=False),
    Column("township", String(12)),
    Column("run_on", Date, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("reminders", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("delivered_at", DateTime(timezone=True)),
    Index("ix_expiry_notices_run_on", "run_on"),
)

# --- 0011: bottleneck work orders (sharing.bottlenecks) ---

# 办事堵点: a material a counter could not let a citizen skip because a department's record
# failed its data contract (skip-check verdict 数据待部门更正): one row per answer, material and
# open quarantine entry that stopped it, written with the answer (sharing.bottlenecks.record_blocked).
# The citizen stopped is only a commitment under the catalog's bottleneck salt (below): counted
# as distinct, named nowhere; the record is reached through its quarantine entry.
blocked_materials = Table(
    "blocked_materials",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("answered_at", DateTime(timezone=True), nullable=False),
    Column("township", String(12), nullable=False),
    Column("station", String(40)),
    Column("matter", String(64), nullable=False),
    Column("material", String(200), nullable=False),
    Column("certificate_types", String(200), nullable=False),  # space-separated type codes
    Column("holder", String(20), nullable=False),  # whose record: applicant | spouse | child | ...
    Column("quarantine_id", Integer, nullable=False),
    Column("dataset", String(100), nullable=False),
    Column("subject_commitment", String(64), nullable=False),
    Index("ix_blocked_materials_quarantine", "quarantine_id"),
)

# The salt of the commitments above and of the work orders' record keys (one row, id 1, made by
# the first answer that needs it). Private, like use_subjects; deleting it unlinks them all.
bottleneck_salt = Table(
    "bottleneck_salt",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("salt", LargeBinary(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# A work order per source record that stopped citizens (sharing.bottlenecks.run_bottlenecks): its
# department, dataset, the record key keyed-hashed (``group_key``) and masked as the contract
# classifies it (``key_shown``), the rules it failed, how many citizens it stopped at which
# matters and materials. 待更正 (open) until the corrected record lands and resolves every
# quarantine entry of it: then closed by the next run, naming the batch (and certificate).
work_orders = Table(
    "work_orders",
    metadata,
    Column("order_id", Integer, primary_key=True, autoincrement=True),
    Column("group_key", String(64), nullable=False),
    Column("department", String(200), nullable=False),
    Column("connector", String(100), nullable=False),
    Column("dataset", String(100), nullable=False),
    Column("key_shown", String(200)),
    Column("rules", JSON, nullable=False),  # [{rule, column, severity, value, contract}]
    Column("entries", JSON, nullable=False),  # the quarantine ids of the record
    Column("batch_refused", Integer, nullable=False),
    Column("citizens", Integer, nullable=False),
    Column("stops", Integer, nullable=False),
    Column("materials", JSON, nullable=False),  # [{matter, material, citizens, stops}]
    Column("first_detected_at", DateTime(timezone=True), nullable=False),
    Column("status", String(10), nullable=False),  # open | closed
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("opened_run", String(36), nullable=False),
    Column("updated_run", String(36), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
    Column("closed_run", String(36)),
    Column("closed_by_batch", String(64)),
    Column("closed_by_cert", String(120)),
    Index("ix_work_orders_group", "group_key", "status"),
    Index("ix_work_orders_department", "department", "status"),
)

# One row per bottleneck run: per department its open, new and closed work orders and the
# distinct citizens its open ones stopped (the trend artifact reads the recent runs).
bottleneck_runs = Table(
    "bottleneck_runs",
    metadata,
    Column("run_id", String(36), primary_key=True),
    Column("run_at", DateTime(timezone=True), nullable=False),
    Column("departments", JSON, nullable=False),  # {department: {open, new, closed, citizens}}
)
