"""One way to write a file: atomic, durable, private; the home tightened when it is not."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from onceonly.files import private_dir, secure_home, write_atomic


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_atomic_writes_bytes_text_or_through_a_writer_private_by_default(tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper" / "a.bin"
    write_atomic(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01" and _mode(target) == 0o600
    assert _mode(target.parent) == 0o700 and _mode(target.parent.parent) == 0o700
    write_atomic(target, "替换")  # replaces, as UTF-8 text
    assert target.read_text(encoding="utf-8") == "替换"
    table = pa.table({"x": [1, 2]})
    parquet = write_atomic(tmp_path / "t.parquet", lambda tmp: pq.write_table(table, tmp))
    assert pq.read_table(parquet).equals(table) and _mode(parquet) == 0o600
    public = write_atomic(tmp_path / "keys.vkey", "k\n", mode=0o644)
    assert _mode(public) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.vkey", "new", "t.parquet"]  # no temporaries


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    write_atomic(target, "old")

    def broken(path: Path) -> None:
        path.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, broken)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_private_dir_makes_every_missing_folder_700(tmp_path: Path) -> None:
    made = private_dir(tmp_path / "a" / "b" / "c")
    assert made.is_dir() and all(_mode(p) == 0o700 for p in (made, made.parent, made.parent.parent))
    assert private_dir(made) == made  # already there


def test_secure_home_tightens_what_others_could_read_and_reports_it(tmp_path: Path) -> None:
    home = tmp_path / "var"
    (home / "lake").mkdir(parents=True)
    (home / "catalog.db").write_text("x")
    (home / "lake" / "a.parquet").write_text("x")
    (home / "keys.vkey").write_text("x")
    os.chmod(home, 0o755)
    os.chmod(home / "lake", 0o775)
    os.chmod(home / "catalog.db", 0o644)
    os.chmod(home / "lake" / "a.parquet", 0o664)
    os.chmod(home / "keys.vkey", 0o600)
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    os.chmod(outside, 0o644)
    (home / "link").symlink_to(outside)

    tightened = secure_home(home)

    assert set(tightened) == {home, home / "lake", home / "catalog.db", home / "lake" / "a.parquet"}
    assert _mode(home) == _mode(home / "lake") == 0o700
    assert _mode(home / "catalog.db") == _mode(home / "lake" / "a.parquet") == 0o600
    assert _mode(outside) == 0o644, "a link's target outside the home is not touched"
    assert secure_home(home) == []  # nothing left to tighten
    assert secure_home(tmp_path / "fresh") == [] and _mode(tmp_path / "fresh") == 0o700  # made 700


def test_the_command_line_creates_private_files() -> None:
    probe = (
        "import os, tempfile, pathlib\n"
        "from onceonly.files import restrict_new_files\n"
        "restrict_new_files()\n"
        "d = pathlib.Path(tempfile.mkdtemp())\n"
        "(d / 'f').write_text('x'); (d / 'g').mkdir()\n"
        "print(oct((d / 'f').stat().st_mode & 0o777), oct((d / 'g').stat().st_mode & 0o777))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0o600", "0o700"]
