"""What the offline checks (verify-slip, verify-extract, decisions verify) share: the keys they
trust and how they answer.

Example::

    report = checked(lambda: verify_slip(text, trusted_verifiers(trusted_key)))
    typer.secho(f"VALID: {report.summary}", fg="green")

Keys given with ``--trusted-key`` (a station's copy of the district's verifier key) are the only
ones trusted; without them, this home's keys. A check that fails prints ``INVALID: <why>`` and
exits 1; one that cannot even read its input raises the OnceOnly error the command line prints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import typer

T = TypeVar("T")


def trusted_verifiers(trusted_keys: list[str] | None) -> list[Any]:
    """The verifier keys given (``--trusted-key``), else this home's."""
    from evidence.keys import log_verifiers
    from evidence.note import parse_vkey
    from onceonly.settings import Settings

    return [parse_vkey(k) for k in trusted_keys] if trusted_keys else log_verifiers(Settings())


def checked(check: Callable[[], T]) -> T:
    """``check()``'s report; ``INVALID: <why>`` and exit 1 when it raises VerificationFailed."""
    from onceonly.errors import VerificationFailed

    try:
        return check()
    except VerificationFailed as exc:
        typer.secho(f"INVALID: {exc}", fg="red")
        raise typer.Exit(1) from None


__all__ = ["checked", "trusted_verifiers"]
