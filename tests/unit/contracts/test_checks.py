"""Vectorised domain checks: pinned vectors, edge cases, and equality with independent oracles."""

from __future__ import annotations

import datetime as dt
import itertools
import string
from collections.abc import Sequence

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import identifiers
from contracts.checks import (
    DOMAIN_CHECKS,
    METRIC_CHECK_NAMES,
    CheckContext,
    DomainCheck,
    citizen_id_valid,
    get_check,
    load_region_codes,
    mobile_valid,
    not_after,
    not_in_future,
    region_code_known,
    uscc_valid,
)
from onceonly.errors import ContractError

# --------------------------------------------------------------------------------------------
# Independent oracles, written from the standards' text (not from contracts.identifiers).

# GB 11643-1999 §5.2, table of weights W_i for positions 1..17, and check characters for
# (Σ a_i·W_i) mod 11 = 0..10.
GB11643_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
GB11643_CHECK = ("1", "0", "X", "9", "8", "7", "6", "5", "4", "3", "2")
ASCII_DIGITS = "0123456789"

# GB 32100-2015: the 31 code characters (values 0..30) and the weights of positions 1..17.
GB32100_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
GB32100_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)

TODAY = dt.date(2024, 6, 1)


def oracle_check_char(body: str) -> str:
    return GB11643_CHECK[sum(int(c) * w for c, w in zip(body, GB11643_WEIGHTS, strict=True)) % 11]


def oracle_citizen_id(value: str | None, today: dt.date) -> bool:
    if value is None:
        return True
    if len(value) != 18 or value[0] not in "123456789":
        return False
    if any(c not in ASCII_DIGITS for c in value[:17]) or value[17] not in ASCII_DIGITS + "X":
        return False
    try:
        birth = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    if not dt.date(1900, 1, 1) <= birth <= today:
        return False
    return oracle_check_char(value[:17]) == value[17]


def oracle_uscc_check_char(body: str) -> str:
    total = sum(GB32100_CHARS.index(c) * w for c, w in zip(body, GB32100_WEIGHTS, strict=True))
    return GB32100_CHARS[(31 - total % 31) % 31]


def oracle_uscc(value: str | None) -> bool:
    if value is None:
        return True
    if len(value) != 18 or any(c not in GB32100_CHARS for c in value):
        return False
    return oracle_uscc_check_char(value[:17]) == value[17]


def with_check(body: str) -> str:
    return body + oracle_check_char(body)


def run_cid(values: Sequence[str | None], today: dt.date = TODAY) -> list[bool]:
    result = citizen_id_valid(pa.array(values, type=pa.string()), today=today)
    assert isinstance(result, pa.BooleanArray)
    assert len(result) == len(values)
    assert result.null_count == 0
    return result.to_pylist()


def run_uscc(values: Sequence[str | None]) -> list[bool]:
    result = uscc_valid(pa.array(values, type=pa.string()))
    assert isinstance(result, pa.BooleanArray)
    assert len(result) == len(values)
    assert result.null_count == 0
    return result.to_pylist()


def test_oracle_constants_match_the_reference_module() -> None:
    assert tuple(identifiers.CITIZEN_ID_WEIGHTS) == GB11643_WEIGHTS
    assert "".join(GB11643_CHECK) == identifiers.CITIZEN_ID_CHECK_CHARS
    assert identifiers.USCC_CHARSET == GB32100_CHARS
    assert tuple(identifiers.USCC_WEIGHTS) == GB32100_WEIGHTS


# --------------------------------------------------------------------------------------------
# GB 11643 citizen ID: pinned vectors

GB11643_EXAMPLE = "11010519491231002X"  # GB 11643-1999 §5.2 worked example


@pytest.mark.parametrize(
    ("value", "expected", "why"),
    [
        (GB11643_EXAMPLE, True, "the standard's own example"),
        ("110105194912310021", False, "wrong check character"),
        ("11010519491231002x", False, "lower-case x"),
        ("11010519491231002", False, "17 characters"),
        ("11010519491231002X0", False, "19 characters"),
        (GB11643_EXAMPLE + "\n", False, "trailing newline"),
        (" " + GB11643_EXAMPLE[1:], False, "leading space"),
        ("1101051949123100AX", False, "letters in the body"),
        ("１１０１０５１９４９１２３１００２X", False, "full-width digits"),
        (with_check("11010520230230001"), False, "30 February"),
        (with_check("11010519000229001"), False, "29 February 1900 (not a leap year)"),
        (with_check("11010520000229001"), True, "29 February 2000 (leap year)"),
        (with_check("11010520230431001"), False, "31 April"),
        (with_check("11010520231301001"), False, "month 13"),
        (with_check("11010520230100001"), False, "day 0"),
        (with_check("11010520240602001"), False, "born the day after today"),
        (with_check("11010520240601001"), True, "born today"),
        (with_check("11010530000101001"), False, "born in 3000"),
        (with_check("11010518991231001"), False, "born before 1900"),
        (with_check("11010519000101001"), True, "born 1900-01-01"),
        (with_check("01010519491231002"), False, "leading zero"),
        ("", False, "empty string"),
    ],
)
def test_citizen_id_vectors(value: str, expected: bool, why: str) -> None:
    assert run_cid([value]) == [expected], why
    assert oracle_citizen_id(value, TODAY) == expected, why


def test_citizen_id_default_today_is_the_system_date() -> None:
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    born_tomorrow = with_check(f"110105{tomorrow:%Y%m%d}001")
    born_today = with_check(f"110105{dt.date.today():%Y%m%d}001")
    assert citizen_id_valid(pa.array([born_tomorrow, born_today])).to_pylist() == [False, True]


def test_nulls_pass_and_shape_is_kept() -> None:
    values = [None, GB11643_EXAMPLE, None, "bad", None]
    assert run_cid(values) == [True, True, True, False, True]
    assert run_cid([None, None]) == [True, True]
    assert citizen_id_valid(pa.nulls(3)).to_pylist() == [True, True, True]
    assert uscc_valid(pa.nulls(2, pa.string())).to_pylist() == [True, True]


def test_a_null_slot_with_bytes_behind_it_still_passes() -> None:
    # Arrow lets a null slot own bytes; only the validity bitmap says it is null.
    base = pa.array([GB11643_EXAMPLE, "110105194912310021"])
    validity = pa.py_buffer(bytes([0b01]))
    arr = pa.Array.from_buffers(pa.string(), 2, [validity, base.buffers()[1], base.buffers()[2]])
    assert arr.to_pylist() == [GB11643_EXAMPLE, None]
    assert citizen_id_valid(arr).to_pylist() == [True, True]


@pytest.mark.parametrize("check", [citizen_id_valid, uscc_valid, mobile_valid, not_in_future])
def test_empty_arrays(check: object) -> None:
    typ = pa.date32() if check is not_in_future else pa.string()
    for values in (pa.array([], typ), pa.chunked_array([], typ)):
        result = check(values)  # type: ignore[operator]
        assert isinstance(result, pa.BooleanArray)
        assert len(result) == 0


def test_chunked_sliced_large_and_dictionary_inputs() -> None:
    values = [GB11643_EXAMPLE, "110105194912310021", None, with_check("11010519000101001"), "x"]
    expected = [True, False, True, True, False]
    chunked = pa.chunked_array([values[:2], values[2:3], values[3:]])
    assert citizen_id_valid(chunked, today=TODAY).to_pylist() == expected
    assert citizen_id_valid(pa.array(values, pa.large_string()), today=TODAY).to_pylist() == expected
    assert citizen_id_valid(pa.array(values, pa.string_view()), today=TODAY).to_pylist() == expected
    assert citizen_id_valid(pa.array(values).dictionary_encode(), today=TODAY).to_pylist() == expected
    padded = pa.array(["junk", *values, "more junk"])
    assert citizen_id_valid(padded.slice(1, len(values)), today=TODAY).to_pylist() == expected
    all_valid = pa.array(["x", GB11643_EXAMPLE, GB11643_EXAMPLE, "y"]).slice(1, 2)
    assert citizen_id_valid(all_valid).to_pylist() == [True, True]


def test_non_string_columns_are_a_contract_error() -> None:
    with pytest.raises(ContractError, match="string column"):
        citizen_id_valid(pa.array([1, 2]))
    with pytest.raises(TypeError):
        citizen_id_valid(["11010519491231002X"])


# --------------------------------------------------------------------------------------------
# GB 32100 USCC: pinned vectors

USCC_EXAMPLE = "91350100M000100Y43"


@pytest.mark.parametrize(
    ("value", "expected", "why"),
    [
        (USCC_EXAMPLE, True, "published example"),
        ("91350100M000100Y44", False, "wrong check character"),
        ("91350100m000100y43", False, "lower case"),
        ("91350100M000100Y4", False, "17 characters"),
        ("91350100M000100Y430", False, "19 characters"),
        (USCC_EXAMPLE + "\n", False, "trailing newline"),
        ("", False, "empty string"),
        *[(f"91350100{letter}000100Y4" + "3", False, f"forbidden letter {letter}") for letter in "IOSVZ"],
        ("91350100M000100Y4I", False, "forbidden letter as check character"),
        ("91350100M000100Y4-", False, "punctuation"),
    ],
)
def test_uscc_vectors(value: str, expected: bool, why: str) -> None:
    assert run_uscc([value]) == [expected], why
    assert oracle_uscc(value) == expected, why


def test_forbidden_letters_fail_even_with_a_matching_weighted_sum() -> None:
    # Give each forbidden letter the check character it would have if it were admitted with
    # the value of its nearest permitted neighbour: the character set alone must reject it.
    for letter, stand_in in zip("IOSVZ", "HNRUY", strict=True):
        body = f"91350100{stand_in}000100Y4"
        forged = body.replace(stand_in, letter) + oracle_uscc_check_char(body)
        assert run_uscc([body + oracle_uscc_check_char(body), forged]) == [True, False]


# --------------------------------------------------------------------------------------------
# Property tests: vectorised == independent oracle == reference module

ID_ALPHABET = ASCII_DIGITS + "Xx" + "AZ -\n"
USCC_ALPHABET = GB32100_CHARS + "IOSVZ" + "abxy -"


@st.composite
def valid_citizen_ids(draw: st.DrawFn, today: dt.date = TODAY) -> str:
    region = draw(st.integers(100000, 999999))
    birth = draw(st.dates(dt.date(1900, 1, 1), today))
    sequence = draw(st.integers(0, 999))
    return with_check(f"{region}{birth:%Y%m%d}{sequence:03d}")


@st.composite
def valid_usccs(draw: st.DrawFn) -> str:
    body = draw(st.text(alphabet=GB32100_CHARS, min_size=17, max_size=17))
    return body + oracle_uscc_check_char(body)


def corrupt(value: str, position: int, replacement: str) -> str:
    return value[:position] + replacement + value[position + 1 :]


def near_miss_strings(alphabet: str) -> st.SearchStrategy[str | None]:
    return st.one_of(
        st.none(),
        st.text(alphabet=alphabet, min_size=16, max_size=20),
        st.text(alphabet=alphabet, min_size=18, max_size=18),
        st.text(max_size=20),
    )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(near_miss_strings(ID_ALPHABET), max_size=40), st.dates(dt.date(1890, 1, 1), dt.date(2100, 1, 1))
)
def test_citizen_id_equals_oracle_on_random_strings(values: list[str | None], today: dt.date) -> None:
    assert run_cid(values, today) == [oracle_citizen_id(v, today) for v in values]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(valid_citizen_ids(), st.integers(0, 17), st.sampled_from(ID_ALPHABET)), max_size=40)
)
def test_single_character_corruptions_of_valid_ids_are_caught(
    cases: list[tuple[str, int, str]],
) -> None:
    valid = [value for value, _, _ in cases]
    corrupted = [corrupt(v, i, c) for v, i, c in cases if v[i] != c]
    assert run_cid(valid) == [True] * len(valid)
    # MOD 11-2 catches every single substitution: each weight is non-zero mod 11.
    assert run_cid(corrupted) == [False] * len(corrupted)
    assert [oracle_citizen_id(v, TODAY) for v in corrupted] == [False] * len(corrupted)


def transpose(value: str, position: int) -> str:
    return value[:position] + value[position + 1] + value[position] + value[position + 2 :]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(valid_citizen_ids(), st.integers(0, 15)), max_size=40))
def test_adjacent_transpositions_in_the_id_body_are_caught(cases: list[tuple[str, int]]) -> None:
    # Swapping digits a != b at i, i+1 changes the weighted sum by (a-b)(W_i - W_i+1), and
    # W_i = 2·W_i+1 (mod 11), so the difference is (a-b)·W_i+1: never 0 mod 11 (11 is prime).
    swapped = [transpose(v, i) for v, i in cases if v[i] != v[i + 1]]
    assert run_cid(swapped) == [False] * len(swapped)
    assert [oracle_citizen_id(v, TODAY) for v in swapped] == [False] * len(swapped)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(valid_usccs(), st.integers(0, 15)), max_size=40))
def test_adjacent_transpositions_in_the_uscc_body_are_caught(cases: list[tuple[str, int]]) -> None:
    # W_i+1 = 3·W_i (mod 31): a swap changes the sum by (a-b)·2·W_i, never 0 mod 31.
    swapped = [transpose(v, i) for v, i in cases if v[i] != v[i + 1]]
    assert run_uscc(swapped) == [False] * len(swapped)


# Real-format identifiers: a Wuqing (120114) resident, and USCCs with real registration-authority
# (9 工商 / 1 机关 / 5 民政), type and GB/T 2260 region prefixes; the check character from the oracle.
REAL_FORMAT_IDS = [with_check("12011419900307123"), with_check("12011420010101004"), GB11643_EXAMPLE]
REAL_FORMAT_USCCS = [
    USCC_EXAMPLE,
    *(
        body + oracle_uscc_check_char(body)
        for body in ("91120114MA05K3L12", "11120114000000196", "51120114MJ0000012")
    ),
]


@pytest.mark.parametrize("value", REAL_FORMAT_IDS)
def test_real_format_citizen_ids_pass_and_each_corruption_fails(value: str) -> None:
    corruptions = {
        "check character": corrupt(value, 17, "0" if value[17] != "0" else "1"),
        "region digit": corrupt(value, 2, str((int(value[2]) + 1) % 10)),
        "impossible date": with_check(value[:10] + "0230" + value[14:17]),
        "future birth": with_check(value[:6] + "20990101" + value[14:17]),
        "transposed": transpose(value, 7) if value[7] != value[8] else transpose(value, 6),
        "too short": value[:17],
        "lower-case x": value[:17] + "x",
    }
    assert run_cid([value]) == [True]
    assert run_cid(list(corruptions.values())) == [False] * len(corruptions), corruptions


@pytest.mark.parametrize("value", REAL_FORMAT_USCCS)
def test_real_format_usccs_pass_and_each_corruption_fails(value: str) -> None:
    corruptions = {
        "check character": corrupt(value, 17, "0" if value[17] != "0" else "1"),
        "forbidden letter": corrupt(value, 9, "O"),
        "lower case": value.lower() if value.lower() != value else corrupt(value, 8, "m"),
        "transposed": transpose(value, 3) if value[3] != value[4] else transpose(value, 4),
        "too long": value + "0",
    }
    assert run_uscc([value]) == [True]
    assert run_uscc(list(corruptions.values())) == [False] * len(corruptions), corruptions


def ascii_only(value: str | None) -> bool:
    # The reference module's `\d` and `$` also accept Unicode digits and a trailing newline;
    # those inputs are outside the cross-check (the vectorised check rejects them).
    return value is None or (value.isascii() and "\n" not in value)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(valid_citizen_ids(dt.date.today()), near_miss_strings(ID_ALPHABET)).filter(ascii_only),
        max_size=40,
    )
)
def test_citizen_id_equals_reference_module(values: list[str | None]) -> None:
    expected = [v is None or identifiers.is_valid_citizen_id(v) for v in values]
    assert citizen_id_valid(pa.array(values, pa.string())).to_pylist() == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(valid_usccs(), near_miss_strings(USCC_ALPHABET)), max_size=40))
def test_uscc_equals_oracle_and_reference(values: list[str | None]) -> None:
    assert run_uscc(values) == [oracle_uscc(v) for v in values]
    assert run_uscc([v for v in values if ascii_only(v)]) == [
        v is None or identifiers.is_valid_uscc(v) for v in values if ascii_only(v)
    ]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(valid_usccs(), st.integers(0, 17), st.sampled_from(USCC_ALPHABET)), max_size=40))
def test_single_character_corruptions_of_valid_usccs_are_caught(cases: list[tuple[str, int, str]]) -> None:
    valid = [value for value, _, _ in cases]
    corrupted = [corrupt(v, i, c) for v, i, c in cases if v[i] != c]
    assert run_uscc(valid) == [True] * len(valid)
    # MOD 31 catches every single substitution: 31 is prime and no weight is 0 mod 31.
    assert run_uscc(corrupted) == [False] * len(corrupted)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.one_of(st.none(), valid_citizen_ids(), st.text(ID_ALPHABET, max_size=20)), max_size=60),
    st.data(),
)
def test_chunking_does_not_change_the_result(values: list[str | None], data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(values)), max_size=4)))
    bounds = [0, *cuts, len(values)]
    chunks = [pa.array(values[a:b], pa.string()) for a, b in itertools.pairwise(bounds)]
    whole = citizen_id_valid(pa.array(values, pa.string()), today=TODAY)
    assert citizen_id_valid(pa.chunked_array(chunks, pa.string()), today=TODAY).equals(whole)


# --------------------------------------------------------------------------------------------
# Mobile numbers, region codes, dates


def test_mobile_numbers() -> None:
    values = [
        "13812345678",
        "19912345678",
        "12812345678",  # second digit 2
        "1381234567",  # 10 digits
        "138123456789",  # 12 digits
        "+8613812345678",
        "138-1234-5678",
        "13812345678\n",
        "1381234567８",  # full-width digit
        None,
    ]
    result = mobile_valid(pa.array(values))
    assert isinstance(result, pa.BooleanArray)
    assert result.to_pylist() == [True, True, False, False, False, False, False, False, False, True]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(ASCII_DIGITS + "+- ", min_size=9, max_size=13)), max_size=30))
def test_mobile_equals_oracle(values: list[str | None]) -> None:
    def oracle(v: str | None) -> bool:
        return v is None or (
            len(v) == 11 and set(v) <= set(ASCII_DIGITS) and v[0] == "1" and v[1] in "3456789"
        )

    assert mobile_valid(pa.array(values, pa.string())).to_pylist() == [oracle(v) for v in values]


def test_load_region_codes() -> None:
    codes = load_region_codes()
    assert codes["120114001000"] == "杨村街道"
    assert len(codes) == 25
    assert all(len(code) == 12 and code.startswith("120114") for code in codes)
    codes["x"] = "mutating the copy"
    assert "x" not in load_region_codes("120114")


@pytest.mark.parametrize("district", ["999999", "../regions/120114", "12011", ""])
def test_load_region_codes_unknown_district(district: str) -> None:
    with pytest.raises(ContractError):
        load_region_codes(district)


def test_region_code_known() -> None:
    known = load_region_codes().keys()
    values = pa.chunked_array([["120114001000", "120114999000"], [None, "120114119000", "12011400100"]])
    assert region_code_known(values, known).to_pylist() == [True, False, True, True, False]
    assert region_code_known(pa.array(["120114001000"], pa.large_string()), known).to_pylist() == [True]
    assert region_code_known(pa.array([], pa.string()), known).to_pylist() == []


def test_not_in_future_dates_and_timestamps() -> None:
    dates = pa.array([dt.date(2024, 5, 31), TODAY, dt.date(2024, 6, 2), None], pa.date32())
    assert not_in_future(dates, today=TODAY).to_pylist() == [True, True, False, True]
    assert not_in_future(dates.cast(pa.date64()), today=TODAY).to_pylist() == [True, True, False, True]
    stamps = [dt.datetime(2024, 6, 1, 23, 59), dt.datetime(2024, 6, 2, 0, 0), None]
    naive = pa.array(stamps, pa.timestamp("us"))
    assert not_in_future(naive, today=TODAY).to_pylist() == [True, False, True]
    # A zoned timestamp counts by its local date: 16:30 UTC on 1 June is 00:30 on 2 June in Beijing.
    utc = pa.array([dt.datetime(2024, 6, 1, 16, 30)], pa.timestamp("s", tz="UTC"))
    assert not_in_future(utc, today=TODAY).to_pylist() == [True]
    assert not_in_future(utc.cast(pa.timestamp("s", tz="Asia/Shanghai")), today=TODAY).to_pylist() == [False]
    assert not_in_future(pa.chunked_array([dates[:2], dates[2:]]), today=TODAY).to_pylist() == [
        True,
        True,
        False,
        True,
    ]


def test_not_in_future_rejects_strings() -> None:
    with pytest.raises(ContractError, match="date or timestamp"):
        not_in_future(pa.array(["2024-01-01"]), today=TODAY)


def test_not_after() -> None:
    d = dt.date
    left = pa.array([d(2024, 1, 1), d(2024, 1, 2), d(2024, 1, 3), None, d(2024, 1, 1), None], pa.date32())
    right = pa.array([d(2024, 1, 2), d(2024, 1, 2), d(2024, 1, 2), d(2024, 1, 1), None, None], pa.date32())
    assert not_after(left, right).to_pylist() == [True, True, False, True, True, True]
    stamps = pa.array([dt.datetime(2024, 1, 2, 12)] * 6, pa.timestamp("ms"))
    assert not_after(left, stamps).to_pylist() == [True, True, False, True, True, True]
    chunked = pa.chunked_array([left[:3], left[3:]])
    assert not_after(chunked, right).to_pylist() == [True, True, False, True, True, True]


def test_not_after_mismatches_are_contract_errors() -> None:
    with pytest.raises(ContractError, match="equal length"):
        not_after(pa.array([1, 2]), pa.array([1]))
    with pytest.raises(ContractError, match="cannot compare"):
        not_after(pa.array([dt.date(2024, 1, 1)]), pa.array(["2024-01-02"]))


# --------------------------------------------------------------------------------------------
# Registry

CTX = CheckContext.for_district("120114", today=TODAY)


def test_registry_names_and_personal_flags() -> None:
    assert (
        set(DOMAIN_CHECKS)
        == {
            "gb11643_citizen_id",
            "gb32100_uscc",
            "region_code",
            "mobile_number",
            "not_in_future",
            "not_after",
        }
        | METRIC_CHECK_NAMES
    )
    assert {name for name, check in DOMAIN_CHECKS.items() if check.personal} == {
        "gb11643_citizen_id",
        "mobile_number",
    }
    for name, check in DOMAIN_CHECKS.items():
        assert isinstance(check, DomainCheck)
        assert check.name == name
        assert check.description
    with pytest.raises(TypeError):
        DOMAIN_CHECKS["x"] = DOMAIN_CHECKS["not_after"]  # type: ignore[index]


def test_get_check_unknown_name_lists_known_names() -> None:
    assert get_check("gb32100_uscc") is DOMAIN_CHECKS["gb32100_uscc"]
    with pytest.raises(ContractError) as info:
        get_check("gb11643")
    message = str(info.value)
    assert "gb11643" in message
    for name in DOMAIN_CHECKS:
        assert name in message


def test_registry_evaluates_columns_of_a_table() -> None:
    table = pa.table(
        {
            "id": [GB11643_EXAMPLE, "110105194912310021", None],
            "uscc": [USCC_EXAMPLE, "91350100M000100Y44", None],
            "town": ["120114001000", "110101001000", None],
            "phone": ["13812345678", "12345", None],
            "born": pa.array([dt.date(1949, 12, 31), dt.date(2030, 1, 1), None], pa.date32()),
            "valid_from": pa.array(
                [dt.date(2024, 1, 1), dt.date(2024, 3, 1), dt.date(2024, 1, 1)], pa.date32()
            ),
            "valid_to": pa.array([dt.date(2025, 1, 1), dt.date(2024, 2, 1), None], pa.date32()),
        }
    )
    cases = {
        ("gb11643_citizen_id", "id"): [True, False, True],
        ("gb32100_uscc", "uscc"): [True, False, True],
        ("region_code", "town"): [True, False, True],
        ("mobile_number", "phone"): [True, False, True],
        ("not_in_future", "born"): [True, False, True],
    }
    for (name, column), expected in cases.items():
        result = get_check(name).evaluate(table, column, {}, CTX)
        assert isinstance(result, pa.BooleanArray)
        assert result.to_pylist() == expected, name
    result = get_check("not_after").evaluate(table, "valid_from", {"other": "valid_to"}, CTX)
    assert result.to_pylist() == [True, False, True]


def test_registry_uses_the_context_date() -> None:
    table = pa.table({"id": [with_check("11010520240602001")]})
    check = get_check("gb11643_citizen_id")
    assert check.evaluate(table, "id", {}, CTX).to_pylist() == [False]
    later = CheckContext(today=dt.date(2024, 6, 2), region_codes=CTX.region_codes)
    assert check.evaluate(table, "id", {}, later).to_pylist() == [True]


def test_registry_argument_and_column_errors() -> None:
    table = pa.table({"a": pa.array([dt.date(2024, 1, 1)]), "b": pa.array([dt.date(2024, 1, 2)])})
    not_after_check = get_check("not_after")
    with pytest.raises(ContractError, match=r"args\.other"):
        not_after_check.evaluate(table, "a", {}, CTX)
    with pytest.raises(ContractError, match="'c'"):
        not_after_check.evaluate(table, "a", {"other": "c"}, CTX)
    with pytest.raises(ContractError, match="'missing'"):
        get_check("not_in_future").evaluate(table, "missing", {}, CTX)
    with pytest.raises(ContractError, match="takes no argument"):
        get_check("not_in_future").evaluate(table, "a", {"other": "b"}, CTX)
    with pytest.raises(ContractError, match="no region codes"):
        empty = CheckContext(today=TODAY)
        get_check("region_code").evaluate(pa.table({"t": ["120114001000"]}), "t", {}, empty)


def test_region_code_check_uses_the_context_list() -> None:
    table = pa.table({"t": ["120114001000", "110101001000"]})
    custom = CheckContext(today=TODAY, region_codes=frozenset({"110101001000"}))
    assert get_check("region_code").evaluate(table, "t", {}, custom).to_pylist() == [False, True]


def test_printable_ascii_is_not_special() -> None:
    # Every single printable character in the last position: only the right one passes.
    body = GB11643_EXAMPLE[:17]
    values = [body + c for c in string.printable]
    assert run_cid(values) == [c == "X" for c in string.printable]
