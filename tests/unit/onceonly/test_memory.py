"""Freed memory goes back to the system: what a long run frees no longer stays in its RSS."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from onceonly import memory
from onceonly.memory import release_freed_memory

# In a fresh interpreter: ~100 MB of 1-1.5 KB objects (glibc's heap, not Python's small-object
# arenas), every 50th kept, so what is freed lies below chunks still in use and free() alone
# cannot give it back.
_FRAGMENTED = textwrap.dedent(
    """
    import json, sys
    from onceonly.memory import release_freed_memory

    def rss_mb():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) // 1024

    objects = [bytes(1000 + i % 500) for i in range(80_000)]
    kept = objects[::50]
    del objects
    freed = rss_mb()
    released = release_freed_memory()
    print(json.dumps({"freed": freed, "after": rss_mb(), "released": released, "kept": len(kept)}))
    """
)


@pytest.mark.skipif(
    memory._MALLOC_TRIM is None or not Path("/proc/self/status").exists(),
    reason="no glibc malloc_trim here (macOS, musl) or no /proc to read RSS from",
)
def test_memory_freed_below_live_chunks_leaves_the_process() -> None:
    out = subprocess.run([sys.executable, "-c", _FRAGMENTED], capture_output=True, text=True, check=True)
    figures = json.loads(out.stdout)
    assert figures["released"] is True
    # ~100 MB was freed while 1 in 50 objects stayed; without the trim RSS stays where it was.
    assert figures["freed"] - figures["after"] > 50, figures


def test_release_is_throttled(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def trim(pad: int) -> int:
        calls.append(pad)
        return 1

    monkeypatch.setattr(memory, "_MALLOC_TRIM", trim)
    monkeypatch.setattr(memory, "_last_release", -float("inf"))
    assert release_freed_memory(at_most_every=60.0) is True
    assert release_freed_memory(at_most_every=60.0) is False  # within the minute: skipped
    assert release_freed_memory() is True  # no interval asked: always
    assert calls == [0, 0]
