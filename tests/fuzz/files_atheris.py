"""Coverage-guided fuzzing of the ``files`` connector's readers with atheris; not run in CI
(pytest collects ``test_*.py`` only; ``tests/unit/connectors/test_files_fuzz.py`` is the bounded
hypothesis run that CI makes).

Example::

    .venv/bin/pip install atheris
    .venv/bin/python tests/fuzz/files_atheris.py -max_total_time=600 -rss_limit_mb=2048 var/fuzz-corpus

The first byte picks how the rest is dropped: CSV (encoding auto, or GBK), JSON lines, or XLSX
(the rest replaces a real workbook's first sheet, zipped). A pull must yield rows or raise an
``OnceOnlyError`` naming the file; any other exception, a crash or passing the RSS limit is a
finding. Small limits make every limit reachable from short inputs.
"""

from __future__ import annotations

import io
import logging
import sys
import zipfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import fsspec

    import connectors.files  # noqa: F401 - loaded through its entry point otherwise, uninstrumented
    from connectors import EnvironmentSecrets, Registration, create_connector
    from connectors.paths import SourcePaths
    from onceonly.errors import OnceOnlyError
    from onceonly.limits import Limits

LIMITS = Limits(field_bytes=1024, row_bytes=4096, json_depth=4, json_int_digits=19, unzipped_bytes=1 << 20)
ROOT = "atheris-drop"
FS = fsspec.filesystem("memory")
WORKBOOK: dict[str, bytes] = {}


def workbook(sheet: bytes) -> bytes:
    if not WORKBOOK:
        import openpyxl

        wb = openpyxl.Workbook()
        wb.active.append(["编号", "姓名"])
        wb.active.append([1, "张三"])
        buffer = io.BytesIO()
        wb.save(buffer)
        archive = zipfile.ZipFile(buffer)
        WORKBOOK.update({p.filename: archive.read(p) for p in archive.infolist()})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in WORKBOOK.items():
            z.writestr(name, sheet if name.endswith("sheet1.xml") else data)
    return out.getvalue()


def one_input(data: bytes) -> None:
    if not data:
        return
    kind, body = data[0] % 4, data[1:]
    name, options = [
        ("drop.csv", {}),
        ("drop.csv", {"encoding": "gbk"}),
        ("drop.jsonl", {}),
        ("drop.xlsx", {}),
    ][kind]
    FS.rm(ROOT, recursive=True) if FS.exists(ROOT) else None
    FS.makedirs(ROOT, exist_ok=True)
    with FS.open(f"{ROOT}/{name}", "wb") as f:
        f.write(workbook(body) if kind == 3 else body)
    registration = Registration(
        name="atheris-source",
        department="fuzz",
        dataset="fuzz",
        type="files",
        options={"path": f"memory://{ROOT}", "pattern": "*", "settle_seconds": 0, **options},
    )
    paths = SourcePaths.build(["memory://"])
    source = create_connector(
        registration, Path("/nonexistent"), EnvironmentSecrets({}), paths=paths, limits=LIMITS
    )
    try:
        for _ in source.pull(None, 64):
            pass
    except OnceOnlyError as exc:
        if name not in str(exc):
            raise AssertionError(f"the message does not name the file: {exc}") from exc


def main() -> None:
    logging.disable(logging.WARNING)  # "going on with the other files", once per input
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
