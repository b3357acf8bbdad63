"""The service's view of the log (``evidence.view.LogView``): the answers of ``check_held``, from a
log verified once and followed — and no catalog edit, however made, gets past it."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from catalog import Catalog
from cli.main import app as cli
from evidence.bundle import check_held
from evidence.keys import SigningKey, log_verifiers, open_key_store
from evidence.log import _OPENING_SCHEMA, TransparencyLog, opening_at, prove_inclusion, record_use
from evidence.view import LogView
from onceonly.errors import VerificationFailed
from onceonly.settings import Settings


def _certificate(settings: Settings, holder: str) -> tuple[str, int]:
    with sqlite3.connect(settings.home / "catalog.db") as conn:
        cert_id, leaf = conn.execute(
            "SELECT cert_id, leaf_index FROM certificates WHERE holder_id = ?", (holder,)
        ).fetchone()
    conn.close()
    return str(cert_id), int(leaf)


def _sql(settings: Settings, statement: str, *params: object) -> None:
    with sqlite3.connect(settings.home / "catalog.db") as conn:
        conn.execute(statement, params)
    conn.close()


def _view() -> tuple[LogView, Catalog, Settings]:
    settings = Settings()
    return LogView(log_verifiers(settings)), Catalog.connect(settings.catalog_url, create=False), settings


def test_the_view_answers_as_check_held_does(people: dict[str, str]) -> None:
    view, catalog, settings = _view()
    cert_id, leaf = _certificate(settings, people["mine"])
    with catalog.read() as conn:
        mine, theirs = (
            view.held(conn, cert_id, leaf),
            check_held(conn, cert_id, leaf, log_verifiers(settings)),
        )
        assert (mine.certificate, mine.state, mine.leaf_index) == (theirs.certificate, theirs.state, leaf)
        assert mine.certificate["holder"]["id"] == people["mine"] and mine.state == "有效"
        # Inclusion proofs from the hashes the view holds, the same as from stored nodes.
        for index in range(view.size):
            assert view.prove_inclusion(index, view.size) == prove_inclusion(conn, index, view.size)
    catalog.dispose()


def test_the_view_follows_the_log_and_sees_a_revocation(people: dict[str, str]) -> None:
    view, catalog, settings = _view()
    cert_id, leaf = _certificate(settings, people["mine"])
    with catalog.read() as conn:
        assert view.held(conn, cert_id, leaf).state == "有效"
        first = view.size
    revoked = CliRunner().invoke(cli, ["certificates", "revoke", cert_id, "--reason", "forged"])
    assert revoked.exit_code == 0, revoked.output
    with catalog.read() as conn:
        assert view.held(conn, cert_id, leaf).state == "撤销"
        assert view.size > first
    catalog.dispose()


def test_an_opening_edited_in_the_catalog_is_refused(people: dict[str, str]) -> None:
    view, catalog, settings = _view()
    cert_id, leaf = _certificate(settings, people["mine"])
    with catalog.read() as conn:
        view.refresh(conn)  # a running service: it verified the log before the edit
    _sql(settings, "UPDATE certificates SET holder_id = ? WHERE cert_id = ?", people["other"], cert_id)
    with catalog.read() as conn:
        opening = opening_at(conn, leaf)
    assert opening is not None
    forged = opening.body.replace(people["mine"].encode(), people["other"].encode())
    with catalog.begin() as conn:  # the forged opening, packed as openings are
        table = pa.table(
            {"ref": [opening.ref], "salt": [opening.salt], "body": [forged]}, schema=_OPENING_SCHEMA
        )
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        conn.exec_driver_sql(
            "UPDATE certificate_openings SET first_leaf = ?, leaf_count = 1, openings = ? "
            "WHERE first_leaf <= ? AND first_leaf > ? - 256",
            (leaf, sink.getvalue().to_pybytes(), leaf, leaf),
        )
    for fresh in (view, LogView(log_verifiers(settings))):
        with catalog.read() as conn, pytest.raises(VerificationFailed, match="does not open leaf"):
            fresh.held(conn, cert_id, leaf)
    catalog.dispose()


def test_a_leaf_changed_in_the_catalog_stops_a_new_view(people: dict[str, str]) -> None:
    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url, create=False)
    log = TransparencyLog(open_key_store(settings).load(settings.log_origin), settings.log_origin)
    with catalog.begin() as conn:
        used = record_use(conn, log, matter="m", certificate_id="c", township="120114001000").first_index
    _sql(
        settings, "UPDATE log_leaves SET entry = replace(entry, '\"m\"', '\"n\"') WHERE leaf_index = ?", used
    )
    view = LogView(log_verifiers(settings))
    with catalog.read() as conn, pytest.raises(VerificationFailed, match="do not fold to the root"):
        view.refresh(conn)
    catalog.dispose()


def test_a_checkpoint_signed_by_another_key_is_refused(people: dict[str, str]) -> None:
    view, catalog, settings = _view()
    other = SigningKey.generate(settings.log_origin)
    with catalog.read() as conn:
        view.refresh(conn)
    forged_log = TransparencyLog(other, settings.log_origin)
    with catalog.begin() as conn:
        record_use(conn, forged_log, matter="m", certificate_id="c", township="120114001000")
    with catalog.read() as conn, pytest.raises(VerificationFailed, match="not signed by the log's keys"):
        view.refresh(conn)
    catalog.dispose()


def test_a_vouched_note_skips_only_the_signature_check(people: dict[str, str]) -> None:
    """The service vouches for the checkpoints its own writer signed: the view then skips their
    signature check — never the check that the key is one of the log's, nor the root's — and a
    note it did not vouch for is checked as before."""
    view, catalog, settings = _view()
    with catalog.read() as conn:
        view.refresh(conn)
    own = TransparencyLog(open_key_store(settings).load(settings.log_origin), settings.log_origin)
    with catalog.begin() as conn:
        appended = record_use(conn, own, matter="m", certificate_id="c", township="120114001000")
    view.vouch(appended.checkpoint)
    with catalog.read() as conn:
        assert view.refresh(conn) == appended.tree_size
    with catalog.begin() as conn:
        appended = record_use(conn, own, matter="m", certificate_id="c", township="120114001000")
    _sql(settings, "UPDATE log_leaves SET entry = CAST(? AS BLOB) WHERE leaf_index = ?",
         b'{"changed":1}', appended.tree_size - 1)  # fmt: skip
    view.vouch(appended.checkpoint)  # vouched for, but its leaves no longer fold to its root
    with catalog.read() as conn, pytest.raises(VerificationFailed, match="do not fold to the root"):
        view.refresh(conn)
    catalog.dispose()


def test_a_note_vouched_for_but_signed_by_a_key_not_the_logs_is_refused(people: dict[str, str]) -> None:
    """A service whose signing key is not among the log's published keys would sign slips nobody
    can verify: vouching for its note does not make the view take it."""
    view, catalog, settings = _view()
    with catalog.read() as conn:
        view.refresh(conn)
    other = TransparencyLog(SigningKey.generate(settings.log_origin), settings.log_origin)
    with catalog.begin() as conn:
        appended = record_use(conn, other, matter="m", certificate_id="c", township="120114001000")
    view.vouch(appended.checkpoint)
    with catalog.read() as conn, pytest.raises(VerificationFailed, match="not among the log's keys"):
        view.refresh(conn)
    catalog.dispose()


def test_a_read_that_began_before_the_newest_append_is_answered(people: dict[str, str]) -> None:
    """Threads of a service read in their own transactions: one may see an older checkpoint than
    the view has followed; that is no error (the view's leaves cover it)."""
    view, catalog, settings = _view()
    cert_id, leaf = _certificate(settings, people["mine"])
    log = TransparencyLog(open_key_store(settings).load(settings.log_origin), settings.log_origin)
    started, appended = threading.Event(), threading.Event()
    seen: list[str] = []

    def older_reader() -> None:
        with catalog.read() as conn:
            conn.exec_driver_sql("SELECT count(*) FROM checkpoints").all()  # the snapshot is taken
            started.set()
            appended.wait(10)
            seen.append(view.held(conn, cert_id, leaf).state)

    reader = threading.Thread(target=older_reader)
    reader.start()
    started.wait(10)
    with catalog.begin() as conn:
        record_use(conn, log, matter="m", certificate_id="c", township="120114001000")
    with catalog.read() as conn:
        newest = view.refresh(conn)
    appended.set()
    reader.join(10)
    assert seen == ["有效"] and view.size == newest
    catalog.dispose()


def test_a_view_of_an_empty_log_says_so(home: Path) -> None:
    assert CliRunner().invoke(cli, ["keys", "init"]).exit_code == 0
    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url)
    view = LogView(log_verifiers(settings))
    with catalog.read() as conn, pytest.raises(VerificationFailed, match="no checkpoint yet"):
        view.refresh(conn)
    catalog.dispose()


def test_a_newer_status_list_relabelled_in_the_catalog_still_counts(people: dict[str, str]) -> None:
    """The kind column beside a leaf is not covered by its hash: relabelling the list that revoked
    a certificate must not bring back the older list (for the view, nor for `check_held`)."""
    settings = Settings()
    cert_id, leaf = _certificate(settings, people["mine"])
    revoked = CliRunner().invoke(cli, ["certificates", "revoke", cert_id, "--reason", "forged"])
    assert revoked.exit_code == 0, revoked.output
    with sqlite3.connect(settings.home / "catalog.db") as db:
        (newest,) = db.execute("SELECT max(leaf_index) FROM log_leaves WHERE kind = 'status-list'").fetchone()
        (before,) = db.execute(
            "SELECT leaf_index FROM log_leaves WHERE kind = 'status-list' AND leaf_index < ? "
            "ORDER BY leaf_index DESC LIMIT 1",
            (newest,),
        ).fetchone()
    db.close()
    # the revoking list relabelled, the older one put back in the catalog, the row reset
    _sql(settings, "UPDATE log_leaves SET kind = 'certificate' WHERE leaf_index = ?", newest)
    _sql(
        settings,
        "UPDATE status_lists SET document = (SELECT entry FROM log_leaves WHERE leaf_index = ?), "
        "leaf_index = ?",
        before,
        before,
    )
    _sql(settings, "UPDATE certificates SET status = '有效' WHERE cert_id = ?", cert_id)
    view, catalog, _ = _view()
    with catalog.read() as conn:
        assert view.held(conn, cert_id, leaf).state == "撤销"
        with pytest.raises(VerificationFailed):
            check_held(conn, cert_id, leaf, log_verifiers(settings))
    catalog.dispose()


def test_the_view_follows_its_own_appends_from_the_entries_written(people: dict[str, str]) -> None:
    """The service's writer hands the view what it appended: the view grows from those bytes
    (no read back) only when they fold to the signed root, and only from where it stands."""
    view, catalog, settings = _view()
    with catalog.read() as conn:
        view.refresh(conn)
    own = TransparencyLog(open_key_store(settings).load(settings.log_origin), settings.log_origin)
    with catalog.begin() as conn:
        appended = record_use(conn, own, matter="m", certificate_id="c", township="120114001000")
    first = appended.tree_size - len(appended.entries)
    assert first == view.size and len(appended.entries) == 2  # the checkpoint leaf, then the use
    assert view.follow_own(first, appended.entries, appended.checkpoint)
    assert view.head == (appended.tree_size, appended.checkpoint)
    fresh = LogView(log_verifiers(settings))
    with catalog.read() as conn:
        fresh.refresh(conn)
        for index in range(first - 3, view.size):
            assert view.leaf_hash(index) == fresh.leaf_hash(index)
            assert view.prove_inclusion(index, view.size) == prove_inclusion(conn, index, view.size)
    # Bytes that are not the ones signed: refused, the view keeps what it had.
    with catalog.begin() as conn:
        appended = record_use(conn, own, matter="m2", certificate_id="c2", township="120114001000")
    first, size = appended.tree_size - len(appended.entries), view.size
    forged = (*appended.entries[:-1], appended.entries[-1].replace(b"m2", b"m3"))
    with pytest.raises(VerificationFailed, match="do not fold to the root"):
        view.follow_own(first, forged, appended.checkpoint)
    # Its own note is not parsed in full, but it must still say the size grown to, and be a note.
    with pytest.raises(VerificationFailed, match="says size"):
        view.follow_own(first, appended.entries[:-1], appended.checkpoint)
    with pytest.raises(VerificationFailed, match="not a signed note"):
        view.follow_own(first, appended.entries, appended.checkpoint.replace("\n\n", "\n"))
    assert view.size == size
    # Not where the view stands (another process appended between): left to refresh.
    assert not view.follow_own(first + 1, appended.entries[1:], appended.checkpoint)
    with catalog.read() as conn:
        assert view.refresh(conn) == appended.tree_size
    # A note by a key that is not the log's is refused, vouched for or not.
    other = TransparencyLog(SigningKey.generate(settings.log_origin), settings.log_origin)
    with catalog.begin() as conn:
        appended = record_use(conn, other, matter="m", certificate_id="c", township="120114001000")
    with pytest.raises(VerificationFailed, match="not among the log's keys"):
        view.follow_own(appended.tree_size - len(appended.entries), appended.entries, appended.checkpoint)
    catalog.dispose()


def test_a_reader_follows_the_log_once_for_its_transaction(
    people: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``LogView.reader``: one query for the catalog's newest checkpoint per read transaction, not
    one per certificate read; the same answers as ``held``; a leaf beyond what the view holds
    follows the log first."""
    import evidence.view

    view, catalog, settings = _view()
    mine = _certificate(settings, people["mine"])
    other = _certificate(settings, people["other"])
    asked: list[int] = []
    newest = evidence.view._NEWEST.first
    monkeypatch.setattr(evidence.view._NEWEST, "first", lambda conn: asked.append(1) or newest(conn))
    with catalog.read() as conn:
        held = view.reader(conn)
        answers = [held(conn, *mine), held(conn, *other), held(conn, *mine)]
        assert len(asked) == 1
        holders = [a.certificate["holder"]["id"] for a in answers]
        assert holders == [people["mine"], people["other"], people["mine"]]
        assert all(a.state == "有效" for a in answers)
        same = view.held(conn, *mine)
        assert (same.certificate, same.state, same.leaf_index) == (
            answers[0].certificate,
            answers[0].state,
            answers[0].leaf_index,
        )
        size = view.size
    log = TransparencyLog(open_key_store(settings).load(settings.log_origin), settings.log_origin)
    with catalog.begin() as conn:
        record_use(conn, log, matter="m", certificate_id="c", township="120114001000")
    with catalog.read() as conn:
        # Leaf ``size`` was not under the view's checkpoint: the reader follows the log to it
        # (without that, "not under the newest checkpoint"); it is a use, not this certificate.
        with pytest.raises(VerificationFailed, match="is not certificate"):
            held(conn, mine[0], size)
        assert view.size > size
    catalog.dispose()


def test_a_reader_of_a_log_that_does_not_verify_refuses_each_certificate(
    people: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    view, catalog, settings = _view()
    mine = _certificate(settings, people["mine"])

    def broken(conn: object, newest: object = None) -> int:
        raise VerificationFailed("the log was changed")

    monkeypatch.setattr(view, "refresh", broken)
    with catalog.read() as conn:
        held = view.reader(conn)  # no error yet: the answer says it per certificate
        with pytest.raises(VerificationFailed, match="the log was changed"):
            held(conn, *mine)
    catalog.dispose()
