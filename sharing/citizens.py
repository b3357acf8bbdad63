"""Citizens: their own credential, and consent for 跨域通办 (serving them in another township).

Example::

    with catalog.begin() as conn:
        citizen, token = enrol(conn, "120114199003071234")          # after checking their identity
    with catalog.begin() as conn:
        consent = grant_consent(conn, log, citizen, township="120114002000",
                                matter="pension-enrolment", purpose="参保登记", minutes=30)
    consent.code                                                   # "K7F3-9QXA": read out at the counter

A consent lets a station of one township ask about the citizen for one matter (or 一件事) and one
purpose (用证事由), once, before it expires (at most :data:`MAX_MINUTES`). The citizen grants it
with their own credential (the service's ``/api/citizen/consents``); the consent is logged
(kind ``consent``, the subject committed), and the code is stored only as SHA-256. At the
counter, :func:`use_consent` accepts it only for that subject, township, matter and purpose,
unexpired and unused — a forged, expired, replayed or other-township code is refused with a
reason the clerk can read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.engine import Connection

from catalog import citizens, consents, utcnow
from contracts.identifiers import is_valid_citizen_id, is_valid_uscc
from evidence.log import TransparencyLog, append_committed
from onceonly.errors import ConfigurationError
from onceonly.privacy import mask_citizen_id, scrub_digits

TOKEN_PREFIX = "ooc_"
MAX_MINUTES = 60
KIND_CONSENT = "consent"
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read out at a counter


@dataclass(frozen=True)
class Citizen:
    citizen_id: str
    subject_id: str


@dataclass(frozen=True)
class Consent:
    code: str
    township: str
    matter: str
    purpose: str
    expires_at: dt.datetime
    leaf_index: int


class ConsentRefused(Exception):
    """A consent code that does not let this station ask: ``message`` for the clerk."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message, self.reason = message, reason


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch in _CODE_ALPHABET)


def enrol(conn: Connection, subject_id: str) -> tuple[Citizen, str]:
    """A credential for the citizen (or business) ``subject_id`` — shown once, stored hashed;
    enrolling again replaces the previous one."""
    subject = subject_id.strip().upper()
    if not (is_valid_citizen_id(subject) or is_valid_uscc(subject)):
        raise ConfigurationError(f"{mask_citizen_id(subject)} is not a valid ID number or credit code")
    existing = conn.execute(select(citizens.c.citizen_id).where(citizens.c.subject_id == subject)).first()
    citizen_id = str(existing.citizen_id) if existing is not None else f"ct{secrets.token_hex(4)}"
    token = f"{TOKEN_PREFIX}{citizen_id}_{secrets.token_urlsafe(32)}"
    values = {"token_sha256": _digest(token), "created_at": utcnow(), "revoked_at": None}
    if existing is None:
        conn.execute(insert(citizens).values(citizen_id=citizen_id, subject_id=subject, **values))
    else:
        conn.execute(update(citizens).where(citizens.c.citizen_id == citizen_id).values(**values))
    return Citizen(citizen_id, subject), token


def authenticate_citizen(conn: Connection, token: str | None) -> Citizen | None:
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = conn.execute(select(citizens).where(citizens.c.token_sha256 == _digest(token))).first()
    if row is None or row.revoked_at is not None:
        return None
    return Citizen(str(row.citizen_id), str(row.subject_id))


def grant_consent(
    conn: Connection,
    log: TransparencyLog,
    citizen: Citizen,
    *,
    township: str,
    matter: str,
    purpose: str,
    minutes: int = 30,
    district: str = "120114",
) -> Consent:
    """The citizen's consent, logged; its code is returned once."""
    from sharing.skipcheck import check_township

    check_township(township, district)
    purpose = scrub_digits(purpose)  # logged (and published): no ID number in clear
    if not purpose.strip():
        raise ConfigurationError("a consent names the purpose (用证事由) it is for")
    if not 1 <= minutes <= MAX_MINUTES:
        raise ConfigurationError(f"a consent lasts 1 to {MAX_MINUTES} minutes, not {minutes}")
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
    code = f"{raw[:4]}-{raw[4:]}"
    now = utcnow()
    expires = now + dt.timedelta(minutes=minutes)
    document = {
        "township": township,
        "matter": matter,
        "purpose": purpose.strip(),
        "granted_at": now.isoformat(timespec="seconds"),
        "expires_at": expires.isoformat(timespec="seconds"),
    }
    appended = append_committed(conn, log, KIND_CONSENT, township, document, citizen.subject_id)
    conn.execute(
        insert(consents).values(
            code_sha256=_digest(raw),
            subject_id=citizen.subject_id,
            township=township,
            matter=matter,
            purpose=purpose.strip(),
            created_at=now,
            expires_at=expires,
            leaf_index=appended.first_index,
        )
    )
    return Consent(code, township, matter, purpose.strip(), expires, appended.first_index)


def use_consent(
    conn: Connection,
    code: str,
    *,
    subject_id: str,
    township: str,
    matter: str,
    purpose: str,
    station_id: str,
    now: dt.datetime | None = None,
) -> int:
    """Spend a consent code for this request (in the caller's transaction); the consent's log
    leaf. :class:`ConsentRefused` when it is not one for exactly this request."""
    now = now or utcnow()
    row = conn.execute(
        select(consents).where(consents.c.code_sha256 == _digest(normalise_code(code))).with_for_update()
    ).first()
    if row is None or row.subject_id != subject_id:
        raise ConsentRefused("授权码无效：请申请人本人重新授权", "consent code unknown or of another subject")
    if row.used_at is not None:
        raise ConsentRefused("授权码已使用过，每个授权码只能使用一次", "consent code already used")
    if _aware(row.expires_at) <= now:
        raise ConsentRefused("授权码已过期：请申请人本人重新授权", "consent code expired")
    if row.township != township:
        raise ConsentRefused("该授权码不是授予本镇街的", "consent code of another township")
    if row.matter != matter or row.purpose != purpose:
        raise ConsentRefused(
            "该授权码不适用于本事项或本用证事由", "consent code of another matter or purpose"
        )
    done = conn.execute(
        update(consents)
        .where(and_(consents.c.code_sha256 == row.code_sha256, consents.c.used_at.is_(None)))
        .values(used_at=now, used_by=station_id)
    )
    if done.rowcount != 1:
        raise ConsentRefused("授权码已使用过，每个授权码只能使用一次", "consent code already used")
    return int(row.leaf_index)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def consent_json(consent: Consent) -> dict[str, Any]:
    return {
        "code": consent.code,
        "township": consent.township,
        "matter": consent.matter,
        "purpose": consent.purpose,
        "expires_at": consent.expires_at.isoformat(timespec="seconds"),
        "leaf_index": consent.leaf_index,
    }


__all__ = [
    "KIND_CONSENT",
    "MAX_MINUTES",
    "TOKEN_PREFIX",
    "Citizen",
    "Consent",
    "ConsentRefused",
    "authenticate_citizen",
    "consent_json",
    "enrol",
    "grant_consent",
    "normalise_code",
    "use_consent",
]
