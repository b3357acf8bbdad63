"""Limits every reader of department data keeps: bytes, depth, time.

Example::

    limits = settings.limits                       # ONCEONLY_LIMIT_* override the defaults
    connector = create_connector(registration, settings.home, secrets, paths=paths, limits=limits)
    ...
    raise SourceDataMalformed(name, limits.exceeded("field_bytes", f"file {file}: a field"))
    # -> "file x.csv: a field exceeds the limit field_bytes = 1 MiB (ONCEONLY_LIMIT_FIELD_BYTES)"

A department system is not trusted to be small, finite or fast: a zip bomb in an XLSX, a
gzip-bombed page, a page that never ends, a source that trickles bytes, a 50 MB CSV field or
JSON nested ten thousand deep must each end in a clear error naming the file or page and the
limit, in bounded time and memory — never a hang, a MemoryError or a traceback. The defaults
leave room for every real export we have seen (the largest XLSX a district sends is tens of
MB; the largest field a free-text 备注 of a few KB).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1 << 20


class Limits(BaseSettings):
    """The readers' limits: ``Settings.limits``, each overridden by ``ONCEONLY_LIMIT_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="ONCEONLY_LIMIT_", extra="forbid", frozen=True)

    field_bytes: int = Field(1 * MiB, ge=1024, description="One CSV field, JSON value or cell, in bytes.")
    row_bytes: int = Field(
        4 * MiB, ge=4096, description="One CSV row or JSON line, in bytes (the CSV reader's block)."
    )
    json_depth: int = Field(32, ge=2, description="Nesting depth of a JSON record or page.")
    json_int_digits: int = Field(40, ge=19, description="Digits of one JSON integer.")
    xlsx_bytes: int = Field(256 * MiB, ge=MiB, description="An XLSX file as dropped (compressed).")
    unzipped_bytes: int = Field(
        1024 * MiB, ge=MiB, description="An XLSX file's content once unzipped (all its parts)."
    )
    zip_ratio: int = Field(200, ge=10, description="Unzipped to zipped size of an XLSX part.")
    page_bytes: int = Field(64 * MiB, ge=MiB, description="One HTTP page, after decompression.")
    page_seconds: float = Field(
        120, gt=0, description="One HTTP page, from request to its last byte (a trickle counts whole)."
    )
    pull_seconds: float = Field(
        4 * 3600, gt=0, description="One connector's pull of an HTTP source, all pages together."
    )
    pages: int = Field(100_000, ge=1, description="Pages of one HTTP pull.")

    def exceeded(self, name: str, what: str) -> str:
        """``what`` + ' exceeds the limit NAME = value (ONCEONLY_LIMIT_NAME)': for error messages."""
        value = getattr(self, name)
        if name.endswith("bytes"):
            shown = _size(value)
        elif name.endswith("seconds"):
            shown = f"{value:g} s"
        else:
            shown = str(value)
        return f"{what} exceeds the limit {name} = {shown} (ONCEONLY_LIMIT_{name.upper()})"


def _size(n: int) -> str:
    if n % MiB == 0:
        return f"{n // MiB} MiB"
    if n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} bytes"


__all__ = ["Limits", "MiB"]
