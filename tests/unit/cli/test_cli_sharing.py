"""`onceonly skip-check` and `onceonly matters list` as a township counter uses them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from catalog import Catalog, use_subjects
from cli.main import app
from evidence.commitment import subject_commitment
from evidence.log import leaves, tree_size
from onceonly.errors import ConfigurationError
from onceonly.settings import Settings

# A valid citizen ID number that also happens to pass the GB 32100 check (1 in 31 do): typed
# for an organisation's matter, it is accepted as a credit code and must still never be shown.
PERSON_AS_USCC = "120114199003070808"
MASKED = "120114********0808"


@pytest.fixture
def catalog(home: Path) -> Iterator[Catalog]:
    catalog = Catalog.connect(Settings().catalog_url)
    yield catalog
    catalog.dispose()


def holds_a_household_register(catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    """The subject holds a 居民户口簿 in force, issued as the daily run issues it — landed through
    its contract, in the home's log under the home's key, in a signed status list — since
    skip-check answers from the log: pension enrolment may skip it (a use to record)."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "lake"))
    import pyarrow as pa
    from landing_harness import HOUSEHOLD, TODAY, household_row, validate

    from evidence.keys import open_key_store
    from evidence.log import TransparencyLog
    from evidence.status_list import publish_status_lists
    from lake.landing import Lander, content_digest
    from lake.parquet import ParquetLake

    assert CliRunner().invoke(app, ["keys", "init"]).exit_code == 0
    settings = Settings()
    log = TransparencyLog(open_key_store(settings).load(settings.log_origin), settings.log_origin)
    rows = [household_row(1, person_id=PERSON_AS_USCC)]
    Lander(catalog, ParquetLake(settings.lake_dir), log, run_id="run-1").land(
        connector="gongan-household",
        compiled=HOUSEHOLD,
        validation=validate(HOUSEHOLD, rows),
        cursor_before=None,
        cursor_after={"page": 1},
        content_sha256=content_digest(pa.Table.from_pylist(rows)),
        issue_date=TODAY,
    )
    with catalog.begin() as conn:
        publish_status_lists(conn, log)


@pytest.mark.parametrize("matter", ["business-opening-social-insurance", "pension-enrolment"])
def test_the_subject_is_masked_in_text_and_json_whatever_the_matter(catalog: Catalog, matter: str) -> None:
    runner = CliRunner()
    text = runner.invoke(app, ["skip-check", "--subject", PERSON_AS_USCC, "--matter", matter])
    assert text.exit_code == 0, text.output
    assert PERSON_AS_USCC not in text.output and f"申请人：{MASKED}" in text.output
    as_json = runner.invoke(app, ["skip-check", "--subject", PERSON_AS_USCC, "--matter", matter, "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert PERSON_AS_USCC not in as_json.output and json.loads(as_json.output)["subject"] == MASKED


FULL_WIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")


@pytest.mark.parametrize(
    "typed",
    [
        "120114199013070808",  # an ID with a typo in its month
        "12011419900307080812",  # a 残疾人证 number (an ID and two digits)
        "120114199003070808".translate(FULL_WIDTH),  # a valid ID typed with a full-width input method
        "120114 19900307 0808",  # spaced as printed on a card
        "１２０１１４ 1990０３07０８０８",  # mixed
    ],
)
@pytest.mark.parametrize("matter", ["business-opening-social-insurance", "pension-enrolment"])
def test_an_invalid_number_is_never_echoed(catalog: Catalog, typed: str, matter: str) -> None:
    # Typed for an organisation's matter or a person's, a number that is not valid there is
    # personal all the same: in no form (as typed, as ASCII digits) may the message repeat it.
    result = CliRunner().invoke(app, ["skip-check", "--subject", typed, "--matter", matter])
    assert isinstance(result.exception, ConfigurationError)
    message = str(result.exception) + result.output
    plain = "".join(
        typed.translate(
            {ord(f): ord(a) for a, f in zip("0123456789X", "０１２３４５６７８９Ｘ", strict=True)}
        ).split()
    )
    assert typed not in message and plain not in message and plain[6:14] not in message
    assert "is not a valid" in message and "120114" in message  # masked, like every ID shown


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--matter", "120114199003070808".translate(FULL_WIDTH)),
        ("--matter", "120114 19900307 0808"),
        ("--record-use", "120114 19900307 0808"),
        ("--record-use", "120114199003070808".translate(FULL_WIDTH)),
    ],
)
def test_an_id_typed_into_the_wrong_option_is_never_echoed(catalog: Catalog, option: str, value: str) -> None:
    args = ["skip-check", "--subject", "120114199003070808", "--matter", "pension-enrolment", option, value]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, ConfigurationError)
    message = str(result.exception) + result.output
    assert value not in message and "19900307" not in message and "１９９００３０７" not in message


@pytest.mark.parametrize("township", ["999", "120114999000", "120114001"])
def test_record_use_for_an_unknown_township_is_refused_and_nothing_is_written(
    catalog: Catalog, township: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    holds_a_household_register(catalog, monkeypatch)
    runner = CliRunner()
    with catalog.read() as conn:
        before = tree_size(conn)
    result = runner.invoke(
        app,
        [
            "skip-check",
            "--subject",
            PERSON_AS_USCC,
            "--matter",
            "pension-enrolment",
            "--record-use",
            township,
        ],
    )
    assert isinstance(result.exception, ConfigurationError)
    message = str(result.exception)
    assert f"township '{township}' is not a township of district 120114" in message
    assert "120114001000 (杨村街道)" in message and "nothing was recorded" in message
    with catalog.read() as conn:
        assert tree_size(conn) == before


def test_record_use_for_a_township_of_the_district_is_recorded(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    holds_a_household_register(catalog, monkeypatch)
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "skip-check",
            "--subject",
            PERSON_AS_USCC,
            "--matter",
            "pension-enrolment",
            "--record-use",
            "120114001000",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "✔ 居民户口簿: 可免交" in result.output
    # its state and validity, as the log gives them
    (line,) = [x for x in result.output.splitlines() if "✔ 居民户口簿" in x]
    assert "，有效，有效期 " in line and " 至 " in line
    with catalog.read() as conn:
        checkpoint, use = list(leaves(conn))[-2:]  # the use, in the log, after the checkpoint before it
        kept = conn.execute(sa.select(use_subjects)).one()
    assert checkpoint.kind == "checkpoint"
    # The published entry commits to the subject and names nobody; the catalog keeps the opening.
    entry = json.loads(use.entry or b"")
    assert use.kind == "use" and PERSON_AS_USCC.encode() not in (use.entry or b"")
    assert kept.subject_id == PERSON_AS_USCC and kept.leaf_index == use.index
    assert entry["subject_commitment"] == subject_commitment(bytes(kept.salt), PERSON_AS_USCC)


def test_matters_list_has_a_header_row(home: Path) -> None:
    result = CliRunner().invoke(app, ["matters", "list"])
    assert result.exit_code == 0, result.output
    header, first = result.output.splitlines()[:2]
    assert header.split() == [
        "matter",
        "name",
        "department",
        "subject",
        "material",
        "whose",
        "accepted",
        "e-certificate",
        "types",
    ]
    assert first.startswith("pension-enrolment") and "居民户口簿" in first


def test_skip_check_as_of_a_past_checkpoint_proves_consistency_to_today(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    holds_a_household_register(catalog, monkeypatch)
    with catalog.read() as conn:
        before = tree_size(conn)
        (cert_id,) = conn.execute(sa.text("SELECT cert_id FROM certificates")).scalars().all()
    runner = CliRunner()
    assert runner.invoke(app, ["certificates", "revoke", cert_id, "--reason", "forged"]).exit_code == 0
    now = runner.invoke(app, ["skip-check", "--subject", PERSON_AS_USCC, "--matter", "pension-enrolment"])
    assert "✘ 居民户口簿: 证照已吊销" in now.output, now.output
    then = runner.invoke(
        app,
        ["skip-check", "--subject", PERSON_AS_USCC, "--matter", "pension-enrolment", "--as-of", str(before)],
    )
    assert then.exit_code == 0, then.output
    assert f"as of checkpoint {before}" in then.output and "consistency proof" in then.output
    assert "✔ 居民户口簿: 可免交" in then.output and "，有效，有效期 " in then.output  # its state then
    as_json = runner.invoke(
        app,
        [
            "skip-check",
            "--subject",
            PERSON_AS_USCC,
            "--matter",
            "pension-enrolment",
            "--as-of",
            str(before),
            "--json",
        ],
    )
    past = json.loads(as_json.output)["as_of"]
    assert past["size"] == before and past["today_size"] > before and past["consistency_proof"]
    refused = runner.invoke(
        app,
        [
            "skip-check",
            "--subject",
            PERSON_AS_USCC,
            "--matter",
            "pension-enrolment",
            "--as-of",
            "1",
            "--record-use",
            "120114001000",
        ],
    )
    assert isinstance(refused.exception, ConfigurationError) and "records no use" in str(refused.exception)
