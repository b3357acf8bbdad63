"""Check characters of Chinese identifiers, one value at a time.

Example::

    >>> citizen_id_check_char("11010519491231002")
    'X'
    >>> uscc_check_char("91350100M000100Y4")
    '3'

These scalar functions are the reference the vectorised checks in ``contracts.checks`` are
tested against, and what the demo department systems use to mint valid identifiers.
"""

from __future__ import annotations

import datetime as dt
import operator
import re

# GB 11643-1999, 校验码: weight of position i (1-based, from the left) is 2^(18-i) mod 11.
CITIZEN_ID_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
# GB 11643-1999, 校验码: the check character for sum mod 11 = 0..10.
CITIZEN_ID_CHECK_CHARS = "10X98765432"

# GB 32100-2015, 代码字符集: the 31 characters a USCC may use (no I, O, S, V, Z).
USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
# GB 32100-2015, 校验码: weight of position i is 3^(i-1) mod 31.
USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
# GB 11714-1997: weights of the organisation code embedded at USCC positions 9-17.
ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
ORG_CODE_CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# Holder identity document types (持证主体代码类型) and their codes. GB/T 36903-2018 names the
# element but its code table is not freely published; we could not obtain it, so these are
# the 证件类型 codes used by the national 政务服务 platform for people (GA/T 517 style, 111 =
# 居民身份证) and 001 for a unified social credit code. Check them against the standard
# before relying on the codes outside this district (README, "Evidence").
HOLDER_ID_TYPES: dict[str, str] = {
    "统一社会信用代码": "001",
    "居民身份证": "111",
    "临时居民身份证": "112",
    "户口簿": "113",
    "普通护照": "414",
    "台湾居民来往大陆通行证": "511",
    "港澳居民来往内地通行证": "516",
    "外国人永久居留身份证": "553",
}

_CITIZEN_ID_RE = re.compile(r"[1-9][0-9]{16}[0-9X]")
_USCC_RE = re.compile(rf"[{USCC_CHARSET}]{{18}}")


def citizen_id_check_char(first17: str) -> str:
    """The GB 11643 MOD 11-2 check character for the first 17 digits of a citizen ID."""
    if len(first17) != 17 or not (first17.isascii() and first17.isdigit()):
        raise ValueError("a citizen ID body is 17 digits")
    total = sum(map(operator.mul, map(int, first17), CITIZEN_ID_WEIGHTS))  # 17 of each: checked above
    return CITIZEN_ID_CHECK_CHARS[total % 11]


def is_valid_citizen_id(value: str) -> bool:
    """Structure, a real birth date and the check character of an 18-character citizen ID."""
    if not isinstance(value, str) or not _CITIZEN_ID_RE.fullmatch(value):
        return False
    try:
        birth = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    if not dt.date(1900, 1, 1) <= birth <= dt.date.today():
        return False
    return citizen_id_check_char(value[:17]) == value[17]


def organization_code_check_char(first8: str) -> str:
    """The GB 11714 check character of a 9-character organisation code."""
    if len(first8) != 8 or any(c not in ORG_CODE_CHARSET for c in first8):
        raise ValueError("an organisation code body is 8 characters of 0-9A-Z")
    total = sum(ORG_CODE_CHARSET.index(c) * w for c, w in zip(first8, ORG_CODE_WEIGHTS, strict=True))
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def uscc_check_char(first17: str) -> str:
    """The GB 32100 MOD 31 check character for the first 17 characters of a USCC."""
    if len(first17) != 17 or any(c not in USCC_CHARSET for c in first17):
        raise ValueError("a USCC body is 17 characters of the GB 32100 character set")
    total = sum(USCC_CHARSET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_CHARSET[(31 - total % 31) % 31]


def uscc_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a USCC (GB 32100), or None when it is valid."""
    if not isinstance(value, str):
        return "is not text"
    if len(value) != 18:
        return f"has {len(value)} characters; a unified social credit code has 18 (GB 32100)"
    bad = next((i for i, c in enumerate(value) if c not in USCC_CHARSET), None)
    if bad is not None:
        return (
            f"character {value[bad]!r} at position {bad + 1} is not in the GB 32100 character set "
            "(0-9 and A-Z without I, O, S, V, Z)"
        )
    expected = uscc_check_char(value[:17])
    if value[17] != expected:
        return f"check character is {value[17]!r}; GB 32100 MOD 31 gives {expected!r}"
    return None


def citizen_id_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a citizen ID number (GB 11643), or None when it is valid.

    The message never repeats the number.
    """
    if not isinstance(value, str) or not _CITIZEN_ID_RE.fullmatch(value):
        return "is not 17 digits and a digit or X (GB 11643)"
    if not is_valid_citizen_id(value):
        expected = citizen_id_check_char(value[:17])
        if value[17] != expected:
            return "check character does not match (GB 11643 MOD 11-2)"
        return "birth date is not a real date between 1900 and today"
    return None


def is_valid_uscc(value: str) -> bool:
    """Character set and MOD 31 check character of an 18-character USCC."""
    if not isinstance(value, str) or not _USCC_RE.fullmatch(value):
        return False
    return uscc_check_char(value[:17]) == value[17]


__all__ = [
    "CITIZEN_ID_CHECK_CHARS",
    "CITIZEN_ID_WEIGHTS",
    "HOLDER_ID_TYPES",
    "ORG_CODE_WEIGHTS",
    "USCC_CHARSET",
    "USCC_WEIGHTS",
    "citizen_id_check_char",
    "citizen_id_problem",
    "is_valid_citizen_id",
    "is_valid_uscc",
    "organization_code_check_char",
    "uscc_check_char",
    "uscc_problem",
]
