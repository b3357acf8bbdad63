"""One way to write a file durably and privately, used by every writer.

Example::

    write_atomic(path, b"...")                                    # bytes or text
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))    # a writer that takes a path
    private_dir(home / "extracts")                                # mkdir -p, each new folder 700
    tightened = secure_home(settings.home)                        # 700 / 600 under the home

``write_atomic`` writes a temporary file beside the target (mode 600 unless told otherwise),
fsyncs it, renames it over the target and fsyncs the folder: a reader sees the old file or
the new one, never half of one, and a power loss after it returned keeps the new one. The
catalog runs SQLite with ``synchronous=FULL``; files the catalog refers to get the same care.

Everything under ``ONCEONLY_HOME`` may hold personal data (the catalog, the lake, quarantine,
extracts, snapshots) or secrets (keys), so the home is 700 and its files 600:
:func:`restrict_new_files` sets the process umask to 077 at the edge (the CLI, a flow run), so
files that libraries create (SQLite, Parquet datasets, Great Expectations) are private too,
and :func:`secure_home` tightens a home an older version or another tool left wider.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def write_atomic(
    path: Path, content: bytes | str | Callable[[Path], object], *, mode: int = PRIVATE_FILE
) -> Path:
    """Replace ``path`` with ``content`` atomically and durably (see the module docstring).

    ``content`` is bytes, text (UTF-8) or a function that writes the file at the path it is
    given (``pq.write_table``). The folder is created (700) if missing.
    """
    path = Path(path)
    private_dir(path.parent)
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        os.fchmod(descriptor, mode)
        if callable(content):
            os.close(descriptor)
            content(temporary)
            os.chmod(temporary, mode)  # the writer may have replaced the file
            fsync_file(temporary)
        else:
            data = content.encode("utf-8") if isinstance(content, str) else content
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    fsync_dir(path.parent)
    return path


def move_durably(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` (same file system) and fsync both folders."""
    private_dir(target.parent)
    os.replace(source, target)
    fsync_dir(target.parent)
    if source.parent != target.parent:
        fsync_dir(source.parent)


def fsync_file(path: Path) -> None:
    """Flush a file someone else wrote (a library given a path) to stable storage."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable (no-op where folders cannot be opened)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_dir(path: Path) -> Path:
    """``mkdir -p path`` with every folder it creates mode 700."""
    path = Path(path)
    if path.is_dir():
        return path
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            folder.mkdir(mode=PRIVATE_DIR)
    return path


def restrict_new_files() -> None:
    """Make files and folders this process creates private (umask 077): called at the edge."""
    os.umask(0o077)


def secure_home(home: Path) -> list[Path]:
    """Create ``home`` (700) or tighten it: folders to 700, files to 600; return what was tightened.

    Symbolic links are neither followed nor changed. A path that cannot be changed (another
    owner) is returned too, so the caller can report it.
    """
    home = Path(home)
    private_dir(home)
    tightened = []
    for folder, dirs, files in os.walk(home):
        entries = [(folder, PRIVATE_DIR)] + [(os.path.join(folder, f), PRIVATE_FILE) for f in files]
        for name, wanted in entries:
            try:
                st = os.lstat(name)
            except FileNotFoundError:
                continue  # removed meanwhile (a SQLite journal)
            if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077:
                continue
            with contextlib.suppress(OSError):
                os.chmod(name, stat.S_IMODE(st.st_mode) & wanted)
            tightened.append(Path(name))
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
    return tightened


__all__ = [
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "fsync_dir",
    "fsync_file",
    "move_durably",
    "private_dir",
    "restrict_new_files",
    "secure_home",
    "write_atomic",
]
