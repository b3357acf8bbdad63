"""Benchmarks: `make bench` runs them; each prints ratios against a baseline measured in the same run."""

from pathlib import Path


class Unavailable(RuntimeError):
    """A benchmark that cannot run on this machine (a tool missing): said, and the others go on."""


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it now (Linux ``/proc``); the gone ones left out."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        # Each thread's children: a process started from another thread than the main one (the
        # counter's log appender, started again by the writer's thread) is listed under that thread.
        for listing in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                todo.extend(int(c) for c in listing.read_text().split() if int(c) not in found)
            except OSError:
                continue  # gone meanwhile
    return found
