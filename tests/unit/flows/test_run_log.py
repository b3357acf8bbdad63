"""Expected failures read as one masked line; tracebacks stay for bugs and unplanned catalog refusals."""

from __future__ import annotations

import logging

import pytest

from flows.run_log import ExpectedFailures, is_expected
from onceonly.errors import CatalogOutdated, CatalogRefused, CatalogUnavailable, SourceSchemaChanged

CITIZEN_ID = "11010519491231002X"


def _record(error: BaseException) -> logging.LogRecord:
    try:
        raise error
    except BaseException:
        import sys

        return logging.LogRecord(
            "prefect.flow_runs", logging.ERROR, __file__, 1, "Engine exited", (), sys.exc_info()
        )


def test_an_expected_failure_loses_its_traceback_and_is_masked() -> None:
    record = _record(SourceSchemaChanged("gongan", f"column renamed near '{CITIZEN_ID}'"))
    assert ExpectedFailures().filter(record)
    assert record.exc_info is None
    assert record.getMessage().startswith("Engine exited: connector 'gongan': column renamed")
    assert CITIZEN_ID not in record.getMessage() and "110105********002X" in record.getMessage()


@pytest.mark.parametrize(
    "error", [RuntimeError("a bug"), CatalogRefused("catalog database error: IntegrityError: ...")]
)
def test_bugs_and_unplanned_catalog_refusals_keep_their_traceback(error: BaseException) -> None:
    record = _record(error)
    assert ExpectedFailures().filter(record)
    assert record.exc_info is not None and record.getMessage() == "Engine exited"


def test_what_counts_as_expected() -> None:
    assert is_expected(CatalogUnavailable("lost the connection"))
    assert is_expected(CatalogOutdated("run `onceonly catalog upgrade`"))
    assert not is_expected(CatalogRefused("constraint"))
    assert not is_expected(ValueError("bug")) and not is_expected(None)
