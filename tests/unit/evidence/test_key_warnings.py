from __future__ import annotations

import datetime as dt

from evidence.keys import KeyRecord, Keyring, SigningKey, key_warnings

NOW = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)
YEAR, MONTH = dt.timedelta(days=365), dt.timedelta(days=30)


def _record(created: dt.datetime, **changes: object) -> KeyRecord:
    key = SigningKey.generate("log.example")
    return KeyRecord(
        name=key.name,
        suite=key.suite,
        key_id=key.key_id.hex(),
        vkey=key.vkey,
        created=created,
        **changes,  # type: ignore[arg-type]
    )


def test_an_active_key_warns_from_a_month_before_its_max_age_and_after() -> None:
    young = _record(NOW - dt.timedelta(days=300))
    near = _record(NOW - dt.timedelta(days=350))
    old = _record(NOW - dt.timedelta(days=400))
    warnings = key_warnings(Keyring((young, near, old)), max_age=YEAR, warn_before=MONTH, now=NOW)
    assert [(w.record, w.kind) for w in warnings] == [(near, "expiring"), (old, "expired")]
    assert "is due for rotation on 2026-12-18 (in 15 days)" in warnings[0].message
    assert "onceonly keys rotate" in warnings[1].message


def test_retired_keys_only_verify_and_an_active_compromised_key_is_named() -> None:
    retired = _record(NOW - 3 * YEAR, retired=NOW - YEAR)
    retired_compromised = _record(NOW - 2 * YEAR, retired=NOW - YEAR, compromised_since=NOW - YEAR)
    compromised = _record(NOW - dt.timedelta(days=10), compromised_since=NOW - dt.timedelta(days=1))
    keyring = Keyring((retired, retired_compromised, compromised))
    (warning,) = key_warnings(keyring, max_age=YEAR, warn_before=MONTH, now=NOW)
    assert warning.kind == "compromised" and warning.record == compromised
    assert "marked compromised since 2026-12-02" in warning.message
