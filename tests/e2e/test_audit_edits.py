"""`onceonly audit` on a finished demo home finds every silent edit, one at a time.

The demo runs once (``onceonly demo``, as a user runs it); each test edits a copy of its home —
a lake or quarantine Parquet file, an extract, a catalog row — the way someone with access to
the files or the database would, without the log's key, and runs ``onceonly audit`` and
``onceonly skip-check`` on it. The edits are the 28 of the issue (the 12 that went unnoticed
first) and a few more of each kind.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli.main import app
from contracts.identifiers import citizen_id_check_char

pytestmark = pytest.mark.e2e

TODAY = dt.date.today()


@dataclass
class Home:
    var: Path

    def sql(self, statement: str, *params: Any) -> list[Any]:
        with sqlite3.connect(self.var / "catalog.db") as conn:
            rows = conn.execute(statement, params).fetchall()
        conn.close()
        return rows

    def receipt(self, dataset: str) -> dict[str, Any]:
        for (entry,) in self.sql("SELECT entry FROM log_leaves WHERE kind = 'batch-receipt'"):
            document = json.loads(entry)
            if document["dataset"] == dataset:
                return dict(document)
        raise AssertionError(f"no receipt of {dataset}")

    def lake_file(self, dataset: str, area: str = "accepted") -> Path:
        paths = [f["path"] for f in self.receipt(dataset)["files"] if f["path"].startswith(area)]
        return self.var / "lake" / paths[0]

    def cli(self, *args: str) -> Any:
        return CliRunner().invoke(app, list(args))

    def audit(self) -> tuple[int, str]:
        result = self.cli("audit")
        return result.exit_code, result.output

    def skip(self, subject: str, matter: str, reader: str = "cli") -> str:
        """The answer's lines, from ``onceonly skip-check`` (each certificate proven by
        ``check_held``) or as the service answers (``LogView``, a view started now)."""
        if reader == "cli":
            result = self.cli("skip-check", "--subject", subject, "--matter", matter)
            assert result.exit_code == 0, result.output
            return str(result.output)
        from catalog import Catalog
        from contracts.model import certificate_datasets
        from evidence.keys import log_verifiers
        from evidence.view import LogView
        from onceonly.settings import Settings
        from sharing.matters import load_matters
        from sharing.skipcheck import skip_check

        settings = Settings()
        issued_by = certificate_datasets(settings.contracts_dir)
        catalogue = load_matters(settings.matters_file, known_types=issued_by)
        view = LogView(log_verifiers(settings))
        catalog = Catalog.connect(settings.catalog_url, create=False)
        try:
            with catalog.read() as conn:
                answer = skip_check(
                    conn,
                    catalogue.asked(matter),
                    subject,
                    issued_by,
                    verifiers=view.verifiers,
                    relatives=catalogue.relatives,
                    held=view.held,
                )
        finally:
            catalog.dispose()
        return "\n".join(
            f"{'✔' if m.skippable else '✘'} {m.material}: {m.verdict} — {m.reason}" for m in answer.materials
        )


@pytest.fixture
def home(demo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Home]:
    """A copy of the demo home (modes kept: the key passphrase file stays 600)."""
    var = tmp_path / "var"
    shutil.copytree(demo_home, var, symlinks=True)
    for name in list(os.environ):
        if name.startswith("ONCEONLY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ONCEONLY_HOME", str(var))
    yield Home(var)


def _rewrite(path: Path, column: str, value: Callable[[pa.DataType], Any]) -> None:
    """Change ``column`` of the first row, keeping the schema and the row count."""
    table = pq.read_table(path)
    field = table.schema.field(column)
    values = table.column(column).to_pylist()
    values[0] = value(field.type)
    table = table.set_column(table.schema.get_field_index(column), field, pa.array(values, field.type))
    pq.write_table(table, path)


def _birth_date(kind: pa.DataType) -> Any:
    return dt.date(1773, 11, 5) if pa.types.is_date(kind) else "1773-11-05"


def _household_holder(home: Home) -> tuple[str, str, int]:
    cert_id, holder, leaf = home.sql(
        "SELECT cert_id, holder_id, leaf_index FROM certificates WHERE type_name = '居民户口簿' "
        "AND status = '有效' ORDER BY leaf_index LIMIT 1"
    )[0]
    return cert_id, holder, leaf


def _a_valid_id_nobody_holds(home: Home) -> str:
    for seq in range(1, 999):
        body = f"120114199901{seq % 28 + 1:02d}{seq:03d}"
        candidate = body + citizen_id_check_char(body)
        if not home.sql("SELECT 1 FROM certificates WHERE holder_id = ?", candidate):
            return candidate
    raise AssertionError("every candidate ID holds a certificate")


# ---------------------------------------------------------------------------- a clean home


def test_the_demo_home_is_consistent_and_skip_check_answers_from_the_log(home: Home) -> None:
    code, output = home.audit()
    assert code == 0 and output.startswith("CONSISTENT"), output
    _, holder, _ = _household_holder(home)
    assert "✔ 居民户口簿: 可免交" in home.skip(holder, "pension-enrolment")


# -------------------------------------------------------------- each edit, and what it shows

Edit = Callable[[Home], None]


def _lake_value(home: Home) -> None:  # a birth_date silently became 1773-11-05
    _rewrite(home.lake_file("household"), "birth_date", _birth_date)


def _lake_deleted(home: Home) -> None:
    home.lake_file("household").unlink()


def _lake_rows_added(home: Home) -> None:
    path = home.lake_file("marriage")
    table = pq.read_table(path)
    pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), path)


def _lake_foreign_file(home: Home) -> None:
    path = home.lake_file("household")
    shutil.copy(path, path.with_name("ffffffffffffffffffffffffffffffff-0.parquet"))


def _quarantine_parquet(home: Home) -> None:
    path = home.lake_file("household", "quarantine")
    table = pq.read_table(path)
    column = next(f.name for f in table.schema if pa.types.is_string(f.type))
    _rewrite(path, column, lambda _: "edited")


def _quarantine_parquet_deleted(home: Home) -> None:
    home.lake_file("marriage", "quarantine").unlink()


def _extract_content(home: Home) -> None:
    path = sorted((home.var / "extracts").glob("township=*/extract=*/certificates.parquet"))[0]
    table = pq.read_table(path)
    column = next(f.name for f in table.schema if pa.types.is_string(f.type))
    _rewrite(path, column, lambda _: "edited")


def _extract_deleted(home: Home) -> None:
    sorted((home.var / "extracts").glob("township=*/extract=*/manifest.txt"))[1].unlink()


def _checkpoint_deleted(home: Home) -> None:
    home.sql("DELETE FROM checkpoints WHERE tree_size = (SELECT MIN(tree_size) FROM checkpoints)")


def _newest_checkpoint_deleted(home: Home) -> None:
    home.sql("DELETE FROM checkpoints WHERE tree_size = (SELECT MAX(tree_size) FROM checkpoints)")


def _quarantine_row_deleted(home: Home) -> None:
    home.sql("DELETE FROM quarantine WHERE id = (SELECT MIN(id) FROM quarantine)")


def _resolved_by(batch: Callable[[Home], str]) -> Edit:
    def edit(home: Home) -> None:
        home.sql(
            "UPDATE quarantine SET resolved_at = '2026-12-01 00:00:00', resolved_by_batch = ? "
            "WHERE id = (SELECT MIN(id) FROM quarantine)",
            batch(home),
        )

    return edit


def _newest_batch(home: Home) -> str:
    return str(home.sql("SELECT batch_id FROM batches ORDER BY landed_at DESC, batch_id LIMIT 1")[0][0])


def _quarantine_row_rule(home: Home) -> None:
    home.sql("UPDATE quarantine SET rule = 'edited' WHERE id = (SELECT MAX(id) FROM quarantine)")


def _column(column: str, value: Callable[[Home], Any]) -> Edit:
    def edit(home: Home) -> None:
        _, _, leaf = _household_holder(home)
        home.sql(f"UPDATE certificates SET {column} = ? WHERE leaf_index = ?", value(home), leaf)

    return edit


def _certificate_deleted(home: Home) -> None:
    home.sql("DELETE FROM certificates WHERE leaf_index = (SELECT MAX(leaf_index) FROM certificates)")


def _opening_salt(home: Home) -> None:
    """The salt of the first certificate changed in its packed openings (an Arrow IPC stream)."""
    first, blob = home.sql(
        "SELECT first_leaf, openings FROM certificate_openings ORDER BY first_leaf LIMIT 1"
    )[0]
    table = pa.ipc.open_stream(pa.py_buffer(blob)).read_all()
    column = next(f.name for f in table.schema if "salt" in f.name)
    salts = table.column(column).to_pylist()
    salts[0] = bytes(len(salts[0]))
    table = table.set_column(
        table.schema.get_field_index(column), column, pa.array(salts, table.schema.field(column).type)
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    home.sql(
        "UPDATE certificate_openings SET openings = ? WHERE first_leaf = ?",
        sink.getvalue().to_pybytes(),
        first,
    )


def _openings_deleted(home: Home) -> None:
    home.sql(
        "DELETE FROM certificate_openings "
        "WHERE first_leaf = (SELECT MAX(first_leaf) FROM certificate_openings)"
    )


def _receipt_edited(home: Home) -> None:
    (leaf, entry) = home.sql("SELECT leaf_index, entry FROM log_leaves WHERE kind = 'batch-receipt' LIMIT 1")[
        0
    ]
    home.sql(
        "UPDATE log_leaves SET entry = ? WHERE leaf_index = ?", entry.replace(b'"counts"', b'"count_"'), leaf
    )


def _batch_count(home: Home) -> None:
    home.sql("UPDATE batches SET accepted = accepted + 1 WHERE dataset = 'household'")


# The first entry committed to a subject (the demo's: a 免申即享 decision, a reminder, a use, …)
_FIRST_USE = "(SELECT MIN(leaf_index) FROM use_subjects)"


def _use_opening_deleted(home: Home) -> None:  # taken out of its subject's who-used
    home.sql(f"DELETE FROM use_subjects WHERE leaf_index = {_FIRST_USE}")


def _use_opening_reassigned(home: Home) -> None:  # moved to someone else's who-used
    home.sql(
        f"UPDATE use_subjects SET subject_id = ? WHERE leaf_index = {_FIRST_USE}",
        _a_valid_id_nobody_holds(home),
    )


def _opening_of_nobody(home: Home) -> None:  # an opening beside an entry that commits to nobody
    home.sql(
        "INSERT INTO use_subjects (leaf_index, subject_id, salt) "
        "SELECT MAX(leaf_index), ?, ? FROM log_leaves WHERE kind = 'checkpoint'",
        _a_valid_id_nobody_holds(home),
        bytes(16),
    )


EDITS: dict[str, tuple[Edit, list[str]]] = {
    # the 12 that went unnoticed
    "lake parquet value": (_lake_value, ["lake: batch", "was changed (bytes"]),
    "lake file deleted": (_lake_deleted, ["is missing"]),
    "quarantine parquet edited": (_quarantine_parquet, ["quarantine/dataset=household/", "was changed"]),
    "extract content edited": (
        _extract_content,
        ["extracts: the extract 1 of township", "was changed since it was logged: certificates.parquet"],
    ),
    "checkpoint row deleted": (_checkpoint_deleted, ["checkpoints: the checkpoint of size", "is missing"]),
    "quarantine row deleted": (
        _quarantine_row_deleted,
        ["quarantine: batch", "a row was deleted or changed"],
    ),
    "certificates.holder_id": (
        _column("holder_id", _a_valid_id_nobody_holds),
        ["certificates: leaf", "holder_id is 120114********"],
    ),
    "certificates.township": (_column("township", lambda _: "120114999000"), ["township is 120114999000"]),
    "certificates.valid_to": (_column("valid_to", lambda _: "2099-12-31"), ["valid_to is 2099-12-31"]),
    "certificates.status": (_column("status", lambda _: "撤销"), ["status: leaf", "the catalog says 撤销"]),
    # more of each kind
    "lake rows added": (_lake_rows_added, ["rows added"]),
    "lake foreign file": (_lake_foreign_file, ["never landed"]),
    "quarantine parquet deleted": (
        _quarantine_parquet_deleted,
        ["quarantine/dataset=marriage/", "is missing"],
    ),
    "extract deleted": (_extract_deleted, ["the log records is missing"]),
    "newest checkpoint deleted": (_newest_checkpoint_deleted, ["the log's head) is missing"]),
    "quarantine row resolved by no batch": (
        _resolved_by(lambda _: "0" * 32),
        ["resolved by a batch the log never recorded"],
    ),
    "quarantine row resolved by a real batch": (
        _resolved_by(_newest_batch),
        ["1 quarantine row(s) are resolved by it, its receipt recorded 0"],
    ),
    "quarantine row rule": (_quarantine_row_rule, ["a row was deleted or changed"]),
    "certificates.holder_name": (_column("holder_name", lambda _: "王五"), ["holder_name is (a name)"]),
    "certificates.valid_from": (_column("valid_from", lambda _: "1900-01-01"), ["valid_from is 1900-01-01"]),
    "certificates.version": (_column("version", lambda _: 7), ["version is 7"]),
    "certificates.status_index": (_column("status_index", lambda _: 0), ["status_index is 0"]),
    "certificate row deleted": (_certificate_deleted, ["no catalog row holds this certificate"]),
    "opening salt changed": (_opening_salt, ["does not open the log's entry"]),
    "openings deleted": (_openings_deleted, ["the certificate and salt the log commits to are missing"]),
    "log entry edited": (_receipt_edited, ["log: ", "onceonly log verify"]),
    "batches.accepted": (_batch_count, ["the catalog says", "accepted rows"]),
    "use opening deleted": (_use_opening_deleted, ["uses: leaf", "its subject's opening is missing"]),
    "use opening reassigned": (_use_opening_reassigned, ["uses: leaf", "its opening names another subject"]),
    "opening of nobody": (_opening_of_nobody, ["uses: an opening names leaf", "which commits to nobody"]),
}


@pytest.mark.parametrize("name", list(EDITS))
def test_each_silent_edit_is_named_by_the_audit(home: Home, name: str) -> None:
    edit, expected = EDITS[name]
    edit(home)
    code, output = home.audit()
    assert code == 1 and output.startswith("INCONSISTENT"), output
    for text in expected:
        assert text in output, f"{name}: {text!r} not in\n{output}"


# --------------------------------------------------------- edits that would grant a skip
# Each twice: as `onceonly skip-check` answers, and as the service does (through its LogView).

READERS = pytest.mark.parametrize("reader", ["cli", "service"])


@READERS
def test_a_revoked_certificate_reset_to_valid_grants_no_skip(home: Home, reader: str) -> None:
    cert_id, holder, _ = _household_holder(home)
    revoked = home.cli("certificates", "revoke", cert_id, "--reason", "forged application")
    assert revoked.exit_code == 0, revoked.output
    answer = home.skip(holder, "pension-enrolment", reader)
    assert "✘ 居民户口簿: 证照已吊销 — 证照自" in answer and "起为撤销：forged application" in answer

    home.sql("UPDATE certificates SET status = '有效' WHERE cert_id = ?", cert_id)
    home.sql("DELETE FROM certificate_events WHERE cert_id = ?", cert_id)
    answer = home.skip(holder, "pension-enrolment", reader)
    assert "可免交" not in answer
    assert "✘ 居民户口簿: 证照已吊销 — 签名状态列表中证照状态为撤销" in answer
    code, output = home.audit()
    assert code == 1 and "the catalog says 有效, the log's history of the certificate gives 撤销" in output


@READERS
def test_an_older_signed_status_list_put_back_grants_no_skip(home: Home, reader: str) -> None:
    cert_id, holder, _ = _household_holder(home)
    (issuer,) = home.sql("SELECT issuer_code FROM certificates WHERE cert_id = ?", cert_id)[0]
    before = home.sql(
        "SELECT document, signature, leaf_index FROM status_lists WHERE issuer_code = ?", issuer
    )[0]
    assert home.cli("certificates", "revoke", cert_id, "--reason", "forged").exit_code == 0
    # the list signed before the revocation, the status and the history put back
    home.sql(
        "UPDATE status_lists SET document = ?, signature = ?, leaf_index = ? WHERE issuer_code = ?",
        *before,
        issuer,
    )
    home.sql("UPDATE certificates SET status = '有效' WHERE cert_id = ?", cert_id)
    home.sql("DELETE FROM certificate_events WHERE cert_id = ?", cert_id)
    answer = home.skip(holder, "pension-enrolment", reader)
    assert "可免交" not in answer
    if reader == "cli":  # the catalog's list is not the newest the log records
        assert "目录数据与透明日志不一致" in answer
    else:  # the service reads the newest list from the log itself: it says 撤销
        assert "✘ 居民户口簿: 证照已吊销 — 签名状态列表中证照状态为撤销" in answer
    code, output = home.audit()
    assert code == 1
    assert f"status: status list {issuer}" in output and "the log's newest is leaf" in output


@READERS
def test_a_holder_reassigned_to_another_person_grants_no_skip(home: Home, reader: str) -> None:
    cert_id, holder, _ = _household_holder(home)
    other = _a_valid_id_nobody_holds(home)
    assert "✘ 居民户口簿: 未找到证照 — 未找到" in home.skip(other, "pension-enrolment", reader)
    home.sql("UPDATE certificates SET holder_id = ? WHERE cert_id = ?", other, cert_id)
    answer = home.skip(other, "pension-enrolment", reader)
    assert "可免交" not in answer and "持有人不符" in answer
    assert other not in answer  # masked, as everywhere
    code, output = home.audit()
    assert code == 1 and "holder_id is" in output and other not in output and holder not in output


@READERS
def test_an_expired_licence_extended_and_reset_grants_no_skip(home: Home, reader: str) -> None:
    rows = home.sql(
        "SELECT cert_id, holder_id, valid_to FROM certificates "
        "WHERE type_name = '营业执照' AND status = '失效' AND valid_to < ? "
        "AND holder_id NOT IN "
        "(SELECT holder_id FROM certificates WHERE type_name = '营业执照' AND status = '有效') LIMIT 1",
        TODAY.isoformat(),
    )
    assert rows, "the demo expires at least one licence"
    cert_id, holder, valid_to = rows[0]
    answer = home.skip(holder, "food-business-licence", reader)
    assert "证照已过期 — 证照" in answer and "失效" in answer
    home.sql("UPDATE certificates SET status = '有效', valid_to = '2099-12-31' WHERE cert_id = ?", cert_id)
    home.sql("DELETE FROM certificate_events WHERE cert_id = ?", cert_id)
    answer = home.skip(holder, "food-business-licence", reader)
    assert "可免交" not in answer
    assert "✘ 营业执照: 证照已过期 — 签名状态列表中证照状态为失效" in answer
    code, output = home.audit()
    assert code == 1 and "valid_to is 2099-12-31" in output and str(valid_to)[:10] in output
