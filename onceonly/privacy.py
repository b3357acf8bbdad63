"""Masking of personal data before it reaches logs, artifacts or error messages.

Example::

    >>> mask_citizen_id("11010519491231002X")
    '110105********002X'
    >>> mask_name("欧阳娜娜"), mask_phone("13812341234")
    ('欧***', '138****1234')
    >>> scrub_text("申请人 11010519491231002X 已提交")
    '申请人 110105********002X 已提交'

Only :func:`mask_citizen_ids` needs pyarrow, and imports it when called, so that masking an
error message costs no Arrow import.

``install_log_masking()`` (called once at start-up, by the CLI and the flows) makes every log
record created in the process — ours, Prefect's, any library's — carry its message with
citizen ID numbers already masked, so a handler can never write one out in clear.

GB/T 35273-2020 (个人信息安全规范) asks that personal information shown on screens, in files
or in messages be de-identified (个人信息的展示限制) without fixing which characters survive; the
forms here are the customary ones: the region code and last four characters of an ID number,
the first character of a name, the first three and last four digits of a phone number.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

if TYPE_CHECKING:
    import pyarrow as pa

MaskKind: TypeAlias = Literal["citizen_id", "name", "phone", "address", "secret", "none"]

_STAR = "*"
_SECRET = "***"

# Quick rejection: a citizen ID always holds a run of 17 ASCII digits (GB 11643-1999 号码的结构).
_DIGIT_RUN_17 = re.compile(r"[0-9]{17}")
# A token that looks like a citizen ID: 6-digit region, a plausible 19xx/20xx birth date,
# 3-digit sequence, then a digit or X/x, and not part of a longer digit run on either side.
# Deliberately loose on the date (no month-length check): masking too much is the safe error.
_CITIZEN_ID_TOKEN = re.compile(
    r"(?<![0-9])"
    r"[0-9]{6}"
    r"(?:19|20)[0-9]{2}"
    r"(?:0[1-9]|1[0-2])"
    r"(?:0[1-9]|[12][0-9]|3[01])"
    r"[0-9]{3}"
    r"(?:[0-9](?![0-9])|[Xx])"
)


# --------------------------------------------------------------------------------------------
# Scalar masks


def mask_citizen_id(value: str | None) -> str | None:
    """``110101********1234``: keep the first 6 and last 4 characters of 10 or more; else all ``*``."""
    if value is None:
        return None
    if len(value) < 10:
        return _STAR * len(value)
    return value[:6] + _STAR * (len(value) - 10) + value[-4:]


def mask_typed(value: str, limit: int = 32) -> str:
    """What someone typed where an identifier belongs, for a message: read as NFKC (full-width
    ``１２０…`` as ``120…``), without spaces, cut to ``limit`` characters and masked like a
    citizen ID (:func:`mask_citizen_id`) — whatever it was, a typo'd ID, a full-width one, a
    USCC or a sentence, it is never repeated in clear."""
    import unicodedata

    plain = "".join(unicodedata.normalize("NFKC", value).split())
    if len(plain) > limit:  # the first six only: cutting would show digits of the middle
        return f"{plain[:6]}{_STAR * 4}…({len(plain)} characters)"
    if len(plain) < 14:  # too short to keep both ends and still hide something
        return _STAR * len(plain)
    return mask_citizen_id(plain) or ""


def mask_name(value: str | None) -> str | None:
    """``张*``, ``欧***``: keep the first character. A one-character value is masked entirely."""
    if value is None:
        return None
    if len(value) <= 1:
        # Keeping the first character of a one-character value would keep all of it.
        return _STAR * len(value)
    return value[0] + _STAR * (len(value) - 1)


def mask_phone(value: str | None) -> str | None:
    """``138****1234``: keep the first 3 and last 4 characters of 8 or more; else all ``*``."""
    if value is None:
        return None
    if len(value) < 8:
        return _STAR * len(value)
    return value[:3] + _STAR * (len(value) - 7) + value[-4:]


def _mask_address(value: str) -> str:
    # Keep the coarse part (province/city/district, usually the first 6 characters).
    return value[:6] + _SECRET


def _mask_secret(value: str) -> str:
    return _SECRET


def _no_mask(value: str) -> str:
    return value


_MASKS: dict[str, Callable[[str], str | None]] = {
    "citizen_id": mask_citizen_id,
    "name": mask_name,
    "phone": mask_phone,
    "address": _mask_address,
    "secret": _mask_secret,
    "none": _no_mask,
}


def mask_value(value: str | None, kind: MaskKind) -> str | None:
    """Mask ``value`` as a ``kind`` of personal data; ``none`` returns it unchanged."""
    try:
        mask = _MASKS[kind]
    except KeyError:
        raise ValueError(f"unknown mask kind {kind!r}; known kinds: {', '.join(_MASKS)}") from None
    return None if value is None else mask(value)


# --------------------------------------------------------------------------------------------
# Vectorised mask


def mask_citizen_ids(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """:func:`mask_citizen_id` over a whole string array (Arrow compute kernels); nulls stay null."""
    # Imported here: error messages and the command line mask text without loading Arrow.
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_null(arr.type):
        return arr
    if pa.types.is_string_view(arr.type):
        arr = arr.cast(pa.large_string())
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        raise TypeError(f"mask_citizen_ids needs a string array, got {arr.type}")
    star = pa.scalar(_STAR, type=arr.type)
    length = pc.utf8_length(arr)
    middle = pc.binary_repeat(star, pc.max_element_wise(pc.subtract(length, 10), 0))
    kept_ends = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(arr, 0, 6), middle, pc.utf8_slice_codeunits(arr, -4), pa.scalar("", arr.type)
    )
    return pc.if_else(pc.greater_equal(length, 10), kept_ends, pc.binary_repeat(star, length))


def mask_names(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """:func:`mask_name` over a whole string array (Arrow compute kernels); nulls stay null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    if pa.types.is_null(arr.type):
        return arr
    star = pa.scalar(_STAR, type=arr.type)
    length = pc.utf8_length(arr)
    kept_first = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(arr, 0, 1),
        pc.binary_repeat(star, pc.max_element_wise(pc.subtract(length, 1), 0)),
        pa.scalar("", arr.type),
    )
    return pc.if_else(pc.greater(length, 1), kept_first, pc.binary_repeat(star, length))


# --------------------------------------------------------------------------------------------
# Free text, exceptions and log records


def _mask_match(match: re.Match[str]) -> str:
    token = match.group(0)
    return token[:6] + _STAR * 8 + token[-4:]


def scrub_text(text: str) -> str:
    """``text`` with every citizen-ID-looking token masked; unchanged (and cheap) otherwise."""
    if not _DIGIT_RUN_17.search(text):
        return text
    return _CITIZEN_ID_TOKEN.sub(_mask_match, text)


_LONG_DIGIT_RUN = re.compile(r"(?<![0-9])[0-9]{15,}[Xx]?(?![0-9])")


def scrub_digits(text: str) -> str:
    """``text`` with citizen IDs masked (:func:`scrub_text`) and also every run of 15 or more
    digits, ID or not: for text that echoes a value someone typed or a driver quoted — an ID
    with a typo in its date, a 残疾人证 number (an ID and two digits) — where masking a long
    number that was no ID is the safe error. Log records keep the narrower :func:`scrub_text`.
    """
    masked = scrub_text(text)
    return _LONG_DIGIT_RUN.sub(lambda m: mask_citizen_id(m.group(0)) or "", masked)


def scrub_exception_message(exc: BaseException) -> str:
    """``str(exc)`` with citizen ID numbers masked, for error reports and artifacts."""
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not hide the original error
        return f"<unprintable {type(exc).__name__}>"
    return scrub_text(text)


class _MaskingRecordFactory:
    """Wraps the previous log record factory; scrubs a record's message as it is created."""

    def __init__(self, previous: Callable[..., logging.LogRecord]) -> None:
        self.previous = previous

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        _scrub_record(record)
        return record


_EXC_FORMATTER = logging.Formatter()


def _scrub_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:
        return  # leave a broken format string to logging's own error handling
    if _DIGIT_RUN_17.search(message):
        record.msg = scrub_text(message)
        record.args = ()
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        # Formatters cache the traceback text in exc_text; pre-fill it only when it holds an
        # ID, so ordinary tracebacks are still formatted by the handler's own formatter.
        text = _EXC_FORMATTER.formatException(record.exc_info)
        if _DIGIT_RUN_17.search(text):
            record.exc_text = scrub_text(text)
    if record.stack_info and _DIGIT_RUN_17.search(record.stack_info):
        record.stack_info = scrub_text(record.stack_info)


_install_lock = threading.Lock()


def install_log_masking() -> None:
    """Make every log record created from now on carry citizen ID numbers masked. Idempotent.

    Wraps ``logging.setLogRecordFactory``, so it covers every logger in the process
    (including Prefect's) whatever handlers and formatters they use.
    """
    with _install_lock:
        current = logging.getLogRecordFactory()
        if isinstance(current, _MaskingRecordFactory):
            return
        logging.setLogRecordFactory(_MaskingRecordFactory(current))


__all__ = [
    "MaskKind",
    "install_log_masking",
    "mask_citizen_id",
    "mask_citizen_ids",
    "mask_name",
    "mask_names",
    "mask_phone",
    "mask_typed",
    "mask_value",
    "scrub_digits",
    "scrub_exception_message",
    "scrub_text",
]
