"""The shipped registrations, pointed at demo systems served on this machine (tests, benchmarks).

Example::

    with LicenceApi(home / "departments" / "scjg" / "licences.db", demo_token(seed)) as api:
        regs = local_registrations(tmp / "registrations", api.base_url)
    # ONCEONLY_REGISTRATIONS_DIR=regs: the http connector reads that API, drop folders are read
    # without waiting for files to settle
"""

from __future__ import annotations

from pathlib import Path

import yaml

from onceonly.settings import Settings

SHIPPED = Path(Settings.model_fields["registrations_dir"].default)


def local_registrations(
    target: Path, api_url: str, *, backoff_seconds: float | None = None, source: Path = SHIPPED
) -> Path:
    """Copy the registrations of ``source`` into ``target``: the ``http`` ones with ``api_url``
    as base URL (and ``backoff_seconds`` between retries, if given), the ``files`` ones reading
    files at once (no settle time). Returns ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if data["type"] == "http":
            data["options"]["base_url"] = api_url
            if backoff_seconds is not None:
                data["options"]["backoff_seconds"] = backoff_seconds
        if data["type"] == "files":
            data["options"]["settle_seconds"] = 0
        (target / path.name).write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return target


__all__ = ["SHIPPED", "local_registrations"]
