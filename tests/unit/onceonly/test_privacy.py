"""Masking of personal data: scalar masks, the vectorised mask, free text and log records."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onceonly.privacy import (
    install_log_masking,
    mask_citizen_id,
    mask_citizen_ids,
    mask_name,
    mask_names,
    mask_phone,
    mask_value,
    scrub_exception_message,
    scrub_text,
)

CITIZEN_ID = "11010519491231002X"
MASKED_ID = "110105********002X"
OTHER_ID = "120114198807150021"
MASKED_OTHER = "120114********0021"


# --------------------------------------------------------------------------------------------
# Scalar masks


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (CITIZEN_ID, MASKED_ID),
        ("110101199003071234", "110101********1234"),
        ("110101900307123", "110101*****7123"),  # 15-digit first-generation ID
        ("1234567890", "1234567890"),  # 10: nothing between the kept ends
        ("12345678901", "123456*8901"),
        ("123456789", "*********"),
        ("", ""),
        (None, None),
    ],
)
def test_mask_citizen_id(value: str | None, expected: str | None) -> None:
    assert mask_citizen_id(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("张三", "张*"), ("欧阳娜娜", "欧***"), ("王", "*"), ("", ""), (None, None)],
)
def test_mask_name(value: str | None, expected: str | None) -> None:
    assert mask_name(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("13812341234", "138****1234"),
        ("022-12345678", "022*****5678"),
        ("1234567", "*******"),
        (None, None),
    ],
)
def test_mask_phone(value: str | None, expected: str | None) -> None:
    assert mask_phone(value) == expected


def test_mask_value_dispatch() -> None:
    assert mask_value(CITIZEN_ID, "citizen_id") == MASKED_ID
    assert mask_value("张三", "name") == "张*"
    assert mask_value("13812341234", "phone") == "138****1234"
    assert mask_value("天津市武清区杨村街道某某路1号", "address") == "天津市武清区***"
    assert mask_value("hunter2", "secret") == "***"
    assert mask_value("", "secret") == "***"
    assert mask_value("public", "none") == "public"
    for kind in ("citizen_id", "name", "phone", "address", "secret", "none"):
        assert mask_value(None, kind) is None
    with pytest.raises(ValueError, match="citizen_id"):
        mask_value("x", "email")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Vectorised mask


@given(st.lists(st.one_of(st.none(), st.text(max_size=8)), max_size=20))
def test_mask_names_masks_each_name_as_mask_name_does(names: list[str | None]) -> None:
    assert mask_names(pa.array(names, pa.string())).to_pylist() == [mask_name(n) for n in names]
    assert mask_names(pa.chunked_array([pa.array(names, pa.string())])).to_pylist() == [
        mask_name(n) for n in names
    ]


def test_mask_citizen_ids_keeps_nulls_and_type() -> None:
    arr = pa.array([CITIZEN_ID, None, "short", ""])
    assert mask_citizen_ids(arr).to_pylist() == [MASKED_ID, None, "*****", ""]
    large = mask_citizen_ids(pa.array([CITIZEN_ID, None], pa.large_string()))
    assert large.type == pa.large_string()
    assert large.to_pylist() == [MASKED_ID, None]
    chunked = pa.chunked_array([[CITIZEN_ID], [None, OTHER_ID]])
    assert mask_citizen_ids(chunked).to_pylist() == [MASKED_ID, None, MASKED_OTHER]
    assert mask_citizen_ids(pa.array([], pa.string())).to_pylist() == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=25), st.text("0123456789X", min_size=8, max_size=20))))
def test_mask_citizen_ids_equals_scalar(values: list[str | None]) -> None:
    result = mask_citizen_ids(pa.array(values, pa.string()))
    assert result.to_pylist() == [mask_citizen_id(v) for v in values]


# --------------------------------------------------------------------------------------------
# Free text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"申请人{CITIZEN_ID}，已核验", f"申请人{MASKED_ID}，已核验"),
        (f"id={CITIZEN_ID.lower()}", f"id={MASKED_ID.lower()}"),
        (f"{CITIZEN_ID} and {OTHER_ID}", f"{MASKED_ID} and {MASKED_OTHER}"),
        (f"('{OTHER_ID}',)", f"('{MASKED_OTHER}',)"),
        (f"{OTHER_ID[:-1]}X9", f"{MASKED_OTHER[:-1]}X9"),  # an X ends the ID even before a digit
        ("order 1201141988071500211", "order 1201141988071500211"),  # 19-digit run: not an ID
        ("order 9" + OTHER_ID, "order 9" + OTHER_ID),  # preceded by a digit
        ("trace 12345678901234567890", "trace 12345678901234567890"),
        ("110105181212310021", "110105181212310021"),  # 18xx: not a plausible birth year
        ("110105194913310021", "110105194913310021"),  # month 13
        ("no numbers here", "no numbers here"),
    ],
)
def test_scrub_text(text: str, expected: str) -> None:
    assert scrub_text(text) == expected


def test_scrub_text_fast_path_returns_the_same_object() -> None:
    text = "1234567890123456 is only sixteen digits"
    assert scrub_text(text) is text


ID_SHAPED = re.compile(
    r"(?<![0-9])[0-9]{6}(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}"
)


@st.composite
def plausible_ids(draw: st.DrawFn) -> str:
    region = draw(st.integers(100000, 999999))
    year = draw(st.integers(1900, 2099))
    month = draw(st.integers(1, 12))
    day = draw(st.integers(1, 31))
    tail = draw(st.integers(0, 999))
    check = draw(st.sampled_from("0123456789Xx"))
    return f"{region}{year}{month:02d}{day:02d}{tail:03d}{check}"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(plausible_ids(), st.text(st.sampled_from("ab 身份证号:，"), max_size=5))))
def test_scrubbed_text_keeps_no_id_and_is_idempotent(parts: list[str]) -> None:
    # Join with a separator so adjacent parts never fuse into a longer digit run.
    text = " ".join(parts)
    scrubbed = scrub_text(text)
    assert not ID_SHAPED.search(scrubbed)
    assert scrub_text(scrubbed) == scrubbed
    assert len(scrubbed) == len(text)


def test_scrub_exception_message() -> None:
    assert scrub_exception_message(ValueError(f"no record for {CITIZEN_ID}")) == f"no record for {MASKED_ID}"
    assert scrub_exception_message(KeyError(OTHER_ID)) == f"'{MASKED_OTHER}'"

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("boom")

    assert scrub_exception_message(Unprintable()) == "<unprintable Unprintable>"


# --------------------------------------------------------------------------------------------
# Log records


@pytest.fixture
def restore_record_factory() -> Iterator[None]:
    original = logging.getLogRecordFactory()
    try:
        yield
    finally:
        logging.setLogRecordFactory(original)


@pytest.fixture
def captured(restore_record_factory: None) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("tests.onceonly.privacy")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def test_log_records_are_scrubbed(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    install_log_masking()
    logger.info("matched %s to %s", CITIZEN_ID, "杨村街道")
    logger.warning(f"rejected {OTHER_ID}")
    logger.info("count=%d", 12345678901234567)  # a 17-digit run that is not an ID
    logger.info({"citizen": CITIZEN_ID})
    logger.debug("plain %s", "message")
    output = stream.getvalue()
    assert CITIZEN_ID not in output
    assert OTHER_ID not in output
    assert f"INFO matched {MASKED_ID} to 杨村街道" in output
    assert f"WARNING rejected {MASKED_OTHER}" in output
    assert "count=12345678901234567" in output
    assert f"{{'citizen': '{MASKED_ID}'}}" in output
    assert "DEBUG plain message" in output


def test_tracebacks_in_log_records_are_scrubbed(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    install_log_masking()
    try:
        raise LookupError(f"unknown citizen {CITIZEN_ID}")
    except LookupError:
        logger.exception("lookup failed")
    output = stream.getvalue()
    assert CITIZEN_ID not in output
    assert f"LookupError: unknown citizen {MASKED_ID}" in output


def test_install_is_idempotent(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    install_log_masking()
    factory = logging.getLogRecordFactory()
    install_log_masking()
    install_log_masking()
    assert logging.getLogRecordFactory() is factory
    logger.info("id %s", CITIZEN_ID)
    assert stream.getvalue() == f"INFO id {MASKED_ID}\n"


def test_install_wraps_the_previous_factory(restore_record_factory: None) -> None:
    previous = logging.getLogRecordFactory()

    def tagging_factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.tag = "kept"
        return record

    logging.setLogRecordFactory(tagging_factory)
    install_log_masking()
    record = logging.getLogRecordFactory()("n", logging.INFO, __file__, 1, "id %s", (CITIZEN_ID,), None)
    assert record.tag == "kept"  # type: ignore[attr-defined]
    assert record.getMessage() == f"id {MASKED_ID}"
    assert record.args == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("110105194913310021", "110105********0021"),  # an ID with a typo in its month
        ("残疾人证 11010519491231002142", "残疾人证 110105**********2142"),  # an ID and two digits
        (f"Duplicate entry '{CITIZEN_ID}' for key", f"Duplicate entry '{MASKED_ID}' for key"),
        ("count 12345678901234", "count 12345678901234"),  # 14 digits: kept
        ("batch 1a2b3c4d5e6f", "batch 1a2b3c4d5e6f"),
    ],
)
def test_scrub_digits_masks_every_long_number_someone_typed_or_a_driver_quoted(
    text: str, expected: str
) -> None:
    from onceonly.privacy import scrub_digits

    assert scrub_digits(text) == expected
