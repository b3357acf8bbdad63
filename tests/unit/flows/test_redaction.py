"""What the flows hand to Prefect is scrubbed in one place: secrets removed, citizen IDs masked,
expected failures in one line; tracebacks stay for bugs."""

from __future__ import annotations

import ast
import logging
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from contracts.identifiers import citizen_id_check_char
from flows.redaction import (
    RedactedError,
    ScrubRecords,
    failed_state,
    failure_message,
    remember_secrets,
    scrub,
    scrub_value,
    scrubbed,
    scrubbed_errors,
)
from flows.run_log import ExpectedFailures
from onceonly.errors import CatalogRefused, SourceDataMalformed, SourceSchemaChanged

FLOWS = Path(__file__).resolve().parents[3] / "flows"
CITIZEN_ID = "12011419850612345" + citizen_id_check_char("12011419850612345")
MASKED = CITIZEN_ID[:6] + "********" + CITIZEN_ID[-4:]
SECRET = "unit-redaction-secret/with+specials"  # unique to this module: the registry is process-wide


@pytest.fixture(autouse=True)
def _secret() -> None:
    remember_secrets([SECRET, "ab", None])


def test_scrub_removes_secrets_in_every_encoding_and_masks_citizen_ids() -> None:
    text = f"token={SECRET} url=https://x/?t={quote(SECRET, safe='')} id {CITIZEN_ID}"
    assert scrub(text) == f"token=*** url=https://x/?t=*** id {MASKED}"
    assert scrub("a tab: ab") == "a tab: ab"  # too short to be searched for
    table = [{"examples (masked)": f"{SECRET}, {CITIZEN_ID}", "rows failed": 2}]
    assert scrub_value(table) == [{"examples (masked)": f"***, {MASKED}", "rows failed": 2}]


def test_a_failure_message_is_one_scrubbed_line() -> None:
    error = SourceDataMalformed("minzheng", f"file x.csv: header\n  {CITIZEN_ID}\n\n  {SECRET}")
    assert failure_message(error) == f"connector 'minzheng': file x.csv: header; {MASKED}; ***"


def test_an_error_is_scrubbed_in_place_or_stood_in_for() -> None:
    error = SourceSchemaChanged("gongan", f"it sends: {CITIZEN_ID}, {SECRET}")
    assert scrubbed(error) is error
    assert str(error) == f"connector 'gongan': it sends: {MASKED}, ***" and error.cause.endswith("***")

    class Quoting(Exception):  # a library error that builds its text from an attribute
        def __init__(self, value: str) -> None:
            super().__init__("quoting")
            self.value = value

        def __str__(self) -> str:
            return f"bad value {self.value}"

    stand_in = scrubbed(Quoting(CITIZEN_ID))
    assert isinstance(stand_in, RedactedError) and str(stand_in) == f"Quoting: bad value {MASKED}"


def test_a_task_raises_its_error_scrubbed_and_a_bug_keeps_its_type_and_traceback() -> None:
    @scrubbed_errors
    def bug() -> None:
        raise KeyError(CITIZEN_ID)

    with pytest.raises(KeyError) as raised:
        bug()
    assert CITIZEN_ID not in str(raised.value) and MASKED in str(raised.value)
    assert raised.traceback[-1].name == "bug"


def test_a_flow_ends_failed_in_one_line_on_an_expected_failure_and_raises_a_bug() -> None:
    state = failed_state(SourceDataMalformed("minzheng", f"file x.csv: not valid UTF-8 text {CITIZEN_ID}"))
    assert state.is_failed()
    assert state.message == f"connector 'minzheng': file x.csv: not valid UTF-8 text {MASKED}"
    with pytest.raises(SourceDataMalformed):
        state.result()
    with pytest.raises(RuntimeError, match="a bug"):
        failed_state(RuntimeError(f"a bug near {SECRET}"))
    with pytest.raises(CatalogRefused):  # refused for a reason nobody planned for: a bug's traceback
        failed_state(CatalogRefused("IntegrityError"))


def _record(error: BaseException, msg: str, *args: object) -> logging.LogRecord:
    try:
        raise error
    except BaseException:
        return logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1, msg, args, sys.exc_info())


def test_records_reach_prefect_scrubbed_with_their_traceback() -> None:
    record = _record(ValueError(f"bad {SECRET}"), "pulled %s for %s", CITIZEN_ID, SECRET)
    assert ScrubRecords().filter(record)
    assert record.getMessage() == f"pulled {MASKED} for ***"
    assert record.exc_text and "Traceback" in record.exc_text and SECRET not in record.exc_text
    formatted = logging.Formatter().format(record)
    assert SECRET not in formatted and "ValueError: bad ***" in formatted


def test_the_engines_record_of_an_expected_failure_is_its_message_in_one_line() -> None:
    error = SourceDataMalformed("minzheng-marriages", "file x.csv: not valid UTF-8 text")
    record = _record(error, f"Task run failed with exception: {error!r} - Retries are exhausted")
    assert ExpectedFailures().filter(record)
    assert record.exc_info is None
    assert record.getMessage() == (
        "Task run failed with exception: connector 'minzheng-marriages': file x.csv: not valid UTF-8 "
        "text - Retries are exhausted"
    )
    record = _record(error, "Encountered exception during execution: %r", error)
    assert ExpectedFailures().filter(record)
    assert record.getMessage() == (
        "Encountered exception during execution: connector 'minzheng-marriages': file x.csv: "
        "not valid UTF-8 text"
    )


def test_artifacts_and_events_reach_prefect_only_through_redaction() -> None:
    doors = {"create_table_artifact", "create_link_artifact", "create_markdown_artifact", "emit_event"}
    doors |= {"create_progress_artifact", "create_image_artifact", "create_artifact"}
    found = []
    for path in sorted(FLOWS.glob("*.py")):
        if path.name == "redaction.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = {a.name for a in node.names} if isinstance(node, ast.ImportFrom | ast.Import) else set()
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            found += [f"{path.name}:{getattr(node, 'lineno', '?')} {n}" for n in names & doors]
    assert not found, "use flows.redaction's table_artifact, link_artifact and event:\n" + "\n".join(found)


def test_a_secret_inside_an_id_does_not_unmask_the_id(monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.redaction
    from flows.redaction import remember_secrets, scrub

    monkeypatch.setattr(flows.redaction, "_secrets", ())  # this test's secret stays its own
    remember_secrets(["1990"])
    assert scrub("holder 110101199003071234 refused") == "holder 110101********1234 refused"
