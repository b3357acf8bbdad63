"""The transparency log as static files after C2SP tlog-tiles, and a reader that checks them.

Example::

    with catalog.read() as conn:
        published = publish(conn, Path("public/log"))   # checkpoint, tile/…, tile/entries/…
    published.tree_size, published.tiles, published.bundles

    tiles = open_tiles(folder_fetch(Path("public/log")), [parse_vkey(vkey)])
    with httpx.Client() as client:                      # or any web server / object store
        tiles = open_tiles(http_fetch("https://example.org/log", client), [parse_vkey(vkey)])
    tiles.verify_root()             # the root computed from the tiles is the signed one
    entry = tiles.check_leaf(7)     # leaf 7's entry, proven to be in the signed tree
    tiles.check_consistency(old)    # the log extends a checkpoint seen before

The layout (c2sp.org/tlog-tiles "APIs"), under one folder or URL prefix:

- ``checkpoint``: the newest signed checkpoint note (c2sp.org/tlog-checkpoint).
- ``tile/<L>/<N>``: 256 hashes of 32 bytes, the Merkle tree hashes of tree level ``8·L``
  (level 0: leaf hashes; level L ≥ 1: each the root of a full tile of level L - 1). ``<N>``
  is written in 3-digit groups, all but the last prefixed ``x``: 1234067 is ``x001/x234/067``.
- ``tile/<L>/<N>.p/<W>``: a partial tile, its first ``W`` hashes (1 to 255), for the
  rightmost tile of each level.
- ``tile/entries/<N>`` (``.p/<W>``): the entries of the leaves of ``tile/0/<N>``, each
  prefixed with its length as a big-endian uint16; entry ``i`` hashes to hash ``i`` of the
  level-0 tile as RFC 9162 / 6962 leaves do, ``SHA-256(0x00 || entry)``. The entries are
  those the catalog stores (``evidence.log.leaves``), as opaque bytes.

Publication is incremental and safe to interrupt: a full tile or bundle never changes, so one
already in the folder is not written again (a mirror copies only new files); new files are
written atomically (``onceonly.files.write_atomic``, mode 644 under 755 folders, as a web
server needs them); the checkpoint is written last, only after the root computed back from
the folder's tiles equals the checkpoint's, so a reader that fetched it finds every tile it
names; partial tiles whose full tile is published are removed after (the spec allows it, and
this reader falls back to the full tile). Leaves are read 64 tiles at a time and tiles of
level 1 and up come from the catalog's stored nodes (``log_nodes``, tree levels 8, 16, …):
memory stays bounded at any log size. tlog-tiles is defined for SHA-256: a log that hashes
with SM3 (``ONCEONLY_LOG_HASH=sm3``) is refused, since no tiles client would compute its roots.

The reader needs no catalog and no network of its own: it reads through ``fetch(path) ->
bytes`` (:func:`folder_fetch`, :func:`http_fetch`), which raises ``FileNotFoundError`` for a
missing file. Hashes read from tiles are trusted only once they lead to the signed root:
every check raises :class:`~onceonly.errors.VerificationFailed` naming the first failure.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from evidence.merkle import (
    HASH_SIZE,
    SHA256,
    consistency_ranges,
    fold_subtrees,
    inclusion_ranges,
    perfect_subtrees,
    root,
    verify_consistency,
    verify_inclusion,
)
from evidence.note import Checkpoint, NoteVerifier, open_note
from onceonly.errors import EvidenceError, VerificationFailed
from onceonly.files import fsync_dir, write_atomic

if TYPE_CHECKING:
    import httpx
    from sqlalchemy.engine import Connection

CHECKPOINT = "checkpoint"
ENTRIES = "entries"
TILE_HEIGHT = 8  # c2sp.org/tlog-tiles: a tile is a subtree of height 8 ...
TILE_WIDTH = 1 << TILE_HEIGHT  # ... 256 hashes, 8,192 bytes when full
MAX_ENTRY = 0xFFFF  # "big-endian uint16 length-prefixed log entries"
PUBLIC_FILE = 0o644
PUBLIC_DIR = 0o755
_MAX_LEVEL = 63  # "<L> ... MUST be a decimal ASCII integer between 0 and 63"
_READ_TILES = 64  # level-0 tiles (and bundles) read from the catalog at once
_CACHED_TILES = 64

Fetch = Callable[[str], bytes]


# ---------------------------------------------------------------------------- layout


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """``tile/<L>/<N>[.p/<W>]`` of the tile ``index`` of ``level`` holding ``width`` hashes.

    >>> tile_path(0, 1234067), tile_path(1, 5, 17)
    ('tile/0/x001/x234/067', 'tile/1/005.p/17')
    """
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= _MAX_LEVEL:
        raise ValueError(f"a tile level is 0 to {_MAX_LEVEL}, not {level!r}")
    return f"tile/{level}/{_index_path(index, width)}"


def bundle_path(index: int, width: int = TILE_WIDTH) -> str:
    """``tile/entries/<N>[.p/<W>]`` of the entry bundle of the leaves of level-0 tile ``index``."""
    return f"tile/{ENTRIES}/{_index_path(index, width)}"


def _index_path(index: int, width: int) -> str:
    """``<N>[.p/<W>]``: N in zero-padded 3-digit groups, all but the last starting with ``x``."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"a tile index is a non-negative integer, not {index!r}")
    if not 1 <= width <= TILE_WIDTH:
        raise ValueError(f"a tile holds 1 to {TILE_WIDTH} hashes, not {width}")
    groups = [f"{index % 1000:03d}"]
    while index >= 1000:
        index //= 1000
        groups.append(f"x{index % 1000:03d}")
    path = "/".join(reversed(groups))
    return path if width == TILE_WIDTH else f"{path}.p/{width}"


def tile_width(size: int, level: int, index: int) -> int:
    """How many hashes tile ``index`` of ``level`` holds in a tree of ``size`` leaves: 256 for a
    full tile, ``floor(size / 256**level) mod 256`` for the partial one, 0 if there is none."""
    count = size >> (TILE_HEIGHT * level)  # complete nodes of tree level 8·level
    full = count >> TILE_HEIGHT
    if index < full:
        return TILE_WIDTH
    return count % TILE_WIDTH if index == full else 0


def tile_levels(size: int) -> int:
    """How many tile levels a tree of ``size`` leaves has (0 for an empty tree)."""
    levels = 0
    while size >> (TILE_HEIGHT * levels):
        levels += 1
    return levels


def encode_bundle(entries: Iterable[bytes], *, first: int = 0) -> bytes:
    """An entry bundle: each entry prefixed with its length, a big-endian uint16.

    ``first`` is the first entry's leaf index, for the message about an entry too long.
    """
    parts: list[bytes] = []
    for offset, entry in enumerate(entries):
        if len(entry) > MAX_ENTRY:
            raise EvidenceError(
                f"leaf {first + offset}: its entry of {len(entry)} bytes is longer than an entry bundle "
                f"holds ({MAX_ENTRY} bytes: c2sp.org/tlog-tiles prefixes each with a uint16 length)"
            )
        parts += (len(entry).to_bytes(2, "big"), entry)
    return b"".join(parts)


def decode_bundle(data: bytes, count: int, *, where: str = "entry bundle") -> list[bytes]:
    """The ``count`` entries of a bundle; VerificationFailed if ``data`` is not exactly that."""
    entries: list[bytes] = []
    at = 0
    while at < len(data):
        if len(data) - at < 2:
            raise VerificationFailed(f"{where}: a length prefix is cut short after {len(entries)} entries")
        end = at + 2 + int.from_bytes(data[at : at + 2], "big")
        if end > len(data):
            raise VerificationFailed(f"{where}: entry {len(entries)} is cut short")
        entries.append(data[at + 2 : end])
        at = end
    if len(entries) != count:
        raise VerificationFailed(f"{where}: {len(entries)} entries where the tree has {count}")
    return entries


# ---------------------------------------------------------------------------- reading


def folder_fetch(directory: Path) -> Fetch:
    """``fetch`` of the files under ``directory`` (a published folder, a mirror's copy)."""
    base = Path(directory)

    def fetch(path: str) -> bytes:
        return (base / path).read_bytes()

    return fetch


def http_fetch(base_url: str, client: httpx.Client) -> Fetch:
    """``fetch`` of the files under ``base_url`` with ``client`` (the caller closes it).

    404 is ``FileNotFoundError``; another status or a transport failure is EvidenceError.
    """
    import httpx

    base = base_url.rstrip("/")

    def fetch(path: str) -> bytes:
        url = f"{base}/{path}"
        try:
            response = client.get(url)
        except httpx.HTTPError as exc:
            raise EvidenceError(f"{url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 404:
            raise FileNotFoundError(url)
        if response.status_code != 200:
            raise EvidenceError(f"{url}: HTTP {response.status_code}")
        return response.content

    return fetch


def open_tiles(fetch: Fetch, verifiers: NoteVerifier | Sequence[NoteVerifier]) -> TileLog:
    """The tiled log whose ``checkpoint`` carries a good signature by one of ``verifiers``."""
    data = _read(fetch, CHECKPOINT)
    try:
        note = data.decode("utf-8")
    except UnicodeDecodeError:
        raise VerificationFailed(f"{CHECKPOINT}: not UTF-8 text") from None
    try:
        checkpoint = Checkpoint.parse(open_note(note, verifiers))
    except VerificationFailed as exc:
        raise VerificationFailed(f"{CHECKPOINT}: {exc}") from None
    return TileLog(fetch, checkpoint)


class TileLog:
    """The tree of ``checkpoint.size`` leaves as its tiles serve it.

    Tile hashes are what the files say until a check ties them to ``checkpoint.root_hash``:
    :meth:`verify_root`, :meth:`check_leaf`, :meth:`check_consistency` and :meth:`check_all`
    do; :meth:`root`, :meth:`inclusion_proof`, :meth:`consistency_proof` and :meth:`entry`
    only compute. Proofs may be asked of any tree size up to the checkpoint's: every node
    they need is complete in the checkpoint's tree, so its tiles hold it.
    """

    def __init__(self, fetch: Fetch, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint
        self._fetch = fetch
        self._tiles: OrderedDict[tuple[int | str, int], list[bytes]] = OrderedDict()

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def root_hash(self) -> bytes:
        return self.checkpoint.root_hash

    # -- hashes, as the tiles say

    def tile(self, level: int, index: int) -> list[bytes]:
        """The hashes of tile ``index`` of ``level`` in the checkpoint's tree.

        A partial tile that is gone (its full tile published since) is read from the full one
        (c2sp.org/tlog-tiles "Partial Tiles": clients MAY fetch the full tile as a fallback).
        """
        cached = self._cached(level, index)
        if cached is not None:
            return cached
        width = self._width(level, index)
        path, data = self._read_tile(tile_path(level, index, width), tile_path(level, index))
        expected = HASH_SIZE * (TILE_WIDTH if path == tile_path(level, index) else width)
        if len(data) != expected:
            raise VerificationFailed(f"{path}: {len(data)} bytes, a tile of its width has {expected}")
        hashes = [data[i : i + HASH_SIZE] for i in range(0, HASH_SIZE * width, HASH_SIZE)]
        return self._cache(level, index, hashes)

    def node(self, height: int, index: int) -> bytes:
        """The hash of the complete subtree ``index`` of ``height`` (leaves
        ``[index·2**height, (index+1)·2**height)``): the root of 2**(height mod 8) hashes of
        one tile of level ``height // 8``."""
        if (index + 1) << height > self.size:
            raise EvidenceError(f"node ({height}, {index}) is not complete in a tree of size {self.size}")
        level, rest = divmod(height, TILE_HEIGHT)
        first = index << rest
        start = first % TILE_WIDTH
        return root(self.tile(level, first // TILE_WIDTH)[start : start + (1 << rest)])

    def range_root(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) of a range an RFC 9162 proof uses, from its perfect subtrees."""
        return fold_subtrees([self.node(height, index) for height, index in perfect_subtrees(lo, hi)])

    def root(self, size: int | None = None) -> bytes:
        """The root of the first ``size`` leaves (default: the checkpoint's), from the tiles."""
        size = self.size if size is None else self._within(size)
        return self.range_root(0, size) if size else SHA256.empty_root

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.3.1 PATH(index, D[size]) from the tiles."""
        size = self.size if size is None else self._within(size)
        return [self.range_root(lo, hi) for lo, hi in inclusion_ranges(index, size)]

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.4.1 PROOF(old_size, D[new_size]) from the tiles."""
        new_size = self.size if new_size is None else self._within(new_size)
        return [self.range_root(lo, hi) for lo, hi in consistency_ranges(old_size, new_size)]

    def entry(self, index: int) -> bytes:
        """Leaf ``index``'s entry from its entry bundle (unchecked: see :meth:`check_leaf`)."""
        if not 0 <= index < self.size:
            raise VerificationFailed(f"leaf {index} is not in the published tree of size {self.size}")
        return self.bundle(index // TILE_WIDTH)[index % TILE_WIDTH]

    def bundle(self, index: int) -> list[bytes]:
        """The entries of entry bundle ``index`` in the checkpoint's tree."""
        cached = self._cached(ENTRIES, index)
        if cached is not None:
            return cached
        width = self._width(0, index)
        path, data = self._read_tile(bundle_path(index, width), bundle_path(index))
        full = path == bundle_path(index)
        entries = decode_bundle(data, TILE_WIDTH if full else width, where=path)[:width]
        return self._cache(ENTRIES, index, entries)

    # -- checks against the signed root

    def verify_root(self) -> bytes:
        """The root computed from the tiles, which must be the checkpoint's; VerificationFailed."""
        computed = self.root()
        if computed != self.checkpoint.root_hash:
            raise VerificationFailed(
                f"the tiles give root {computed.hex()} for size {self.size}; the signed checkpoint "
                f"says {self.checkpoint.root_hash.hex()}"
            )
        return computed

    def check_leaf(self, index: int) -> bytes:
        """Leaf ``index``'s entry, checked: its hash and the inclusion proof computed from the
        tiles lead to the signed root (RFC 9162 §2.1.3.2)."""
        entry = self.entry(index)
        try:
            verify_inclusion(
                SHA256.leaf(entry), index, self.size, self.inclusion_proof(index), self.root_hash
            )
        except VerificationFailed as exc:
            raise VerificationFailed(f"leaf {index}: {exc}") from None
        return entry

    def check_consistency(self, old: Checkpoint) -> None:
        """Check that the tree of this checkpoint extends ``old`` (a checkpoint seen before and
        whose signature the caller checked), with a proof computed from the tiles."""
        if old.origin != self.checkpoint.origin:
            raise VerificationFailed(
                f"the old checkpoint is of log {old.origin!r}, the tiles of {self.checkpoint.origin!r}"
            )
        if old.size > self.size:
            raise VerificationFailed(
                f"the old checkpoint is of size {old.size}, larger than the published {self.size}"
            )
        proof = self.consistency_proof(old.size)
        verify_consistency(old.size, self.size, proof, old.root_hash, self.root_hash)

    def check_all(self) -> None:
        """Recompute every published hash (what a monitor or a mirror does): the root, then
        from the top level down each full tile against its hash in the tile above (already
        checked), and each entry against its level-0 tile; the first wrong file is named.

        Reads every bundle and tile once, a few tiles in memory at a time.
        """
        self.verify_root()  # the partial tiles of every level make up the root
        for level in reversed(range(tile_levels(self.size))):
            for index in range((self.size >> (TILE_HEIGHT * level)) // TILE_WIDTH + 1):
                if not tile_width(self.size, level, index):
                    continue
                hashes = self.tile(level, index)
                if len(hashes) == TILE_WIDTH:
                    # A full tile's root is hash (index mod 256) of the tile above it.
                    above = self.tile(level + 1, index // TILE_WIDTH)[index % TILE_WIDTH]
                    if root(hashes) != above:
                        raise VerificationFailed(
                            f"{tile_path(level, index)}: its hashes do not give hash {index % TILE_WIDTH} "
                            f"of {_served_path(level + 1, index // TILE_WIDTH, self.size)}"
                        )
                if level == 0:
                    self._check_bundle(index, hashes)

    # -- internals

    def _check_bundle(self, index: int, hashes: list[bytes]) -> None:
        for offset, entry in enumerate(self.bundle(index)):
            if SHA256.leaf(entry) != hashes[offset]:
                raise VerificationFailed(
                    f"{bundle_path(index, len(hashes))}: entry {offset} (leaf {index * TILE_WIDTH + offset}) "
                    f"does not hash to its hash in {tile_path(0, index, len(hashes))}"
                )

    def _within(self, size: int) -> int:
        if not 0 <= size <= self.size:
            raise EvidenceError(f"size {size} is outside the published tree of {self.size} leaves")
        return size

    def _width(self, level: int, index: int) -> int:
        width = tile_width(self.size, level, index)
        if not width:
            raise EvidenceError(f"a tree of size {self.size} has no tile {index} of level {level}")
        return width

    def _read_tile(self, path: str, full: str) -> tuple[str, bytes]:
        """``path`` and its bytes, or for a partial tile that is gone its ``full`` tile's."""
        try:
            return path, self._fetch(path)
        except FileNotFoundError:
            if path == full:
                raise EvidenceError(f"{path} is not published") from None
        try:
            return full, self._fetch(full)
        except FileNotFoundError:
            raise EvidenceError(f"{path} is not published, nor its full tile") from None

    def _cached(self, level: int | str, index: int) -> list[bytes] | None:
        found = self._tiles.get((level, index))
        if found is not None:
            self._tiles.move_to_end((level, index))
        return found

    def _cache(self, level: int | str, index: int, values: list[bytes]) -> list[bytes]:
        self._tiles[level, index] = values
        if len(self._tiles) > _CACHED_TILES:
            self._tiles.popitem(last=False)
        return values


def _served_path(level: int, index: int, size: int) -> str:
    return tile_path(level, index, tile_width(size, level, index))


def _read(fetch: Fetch, path: str) -> bytes:
    try:
        return fetch(path)
    except FileNotFoundError:
        raise EvidenceError(f"{path} is not published") from None


# ---------------------------------------------------------------------------- publishing


class TileSource(Protocol):
    """What publication reads of a log: its leaves and its stored tree nodes."""

    def leaves(self, lo: int, hi: int) -> Iterable[tuple[bytes, bytes]]:
        """``(entry, leaf hash)`` of the leaves ``lo..hi-1``, in order."""
        ...

    def nodes(self, height: int, lo: int, hi: int) -> Sequence[bytes]:
        """The complete tree nodes ``(height, lo..hi-1)`` (heights 8, 16, …), in order."""
        ...

    def root_at(self, size: int) -> bytes:
        """The root of the first ``size`` leaves."""
        ...


@dataclass(frozen=True)
class Published:
    """What :func:`publish` wrote."""

    tree_size: int
    previous_size: int  # the size of the folder's checkpoint before (0: a new folder)
    root_hash: bytes
    tiles: int  # hash tiles written, full and partial
    bundles: int  # entry bundles written, full and partial
    removed: int  # partial tiles and bundles removed, their full one published
    checkpoint_written: bool


def publish(conn: Connection, directory: Path) -> Published | None:
    """Publish the catalog's log up to its newest checkpoint under ``directory``; None if the
    log has no checkpoint yet. EvidenceError for an SM3 log (tlog-tiles is SHA-256 only)."""
    # The catalog side is imported here: a verifier reading tiles needs neither it nor Arrow.
    from evidence.log import latest_checkpoint, read_head

    hasher = read_head(conn).hasher
    if hasher.name != SHA256.name:
        raise EvidenceError(
            f"this log hashes with {hasher.name} (ONCEONLY_LOG_HASH); C2SP tlog-tiles is defined for "
            "SHA-256 only, and a tiles client would compute other roots: publish its proofs instead "
            "(`onceonly log prove`, `log consistency`)"
        )
    newest = latest_checkpoint(conn)
    if newest is None:
        return None
    return publish_tiles(directory, newest[1], _CatalogLog(conn))


def publish_tiles(directory: Path, note: str, source: TileSource) -> Published:
    """Write the tiles, bundles and then the checkpoint ``note`` of ``source`` under
    ``directory``, incrementally (see the module docstring); one publisher at a time."""
    checkpoint = _checkpoint_of(note, "the checkpoint to publish")
    size = checkpoint.size
    folder = _Folder(Path(directory))
    with folder.locked():
        before = _published_size(folder, checkpoint, source)
        tiles, bundles = _write_level_zero(folder, source, before, size)
        tiles += _write_upper_levels(folder, source, before, size)
        computed = TileLog(folder_fetch(folder.root), checkpoint).root()
        if computed != checkpoint.root_hash:
            raise EvidenceError(
                f"the tiles under {folder.root} give another root than the checkpoint of size {size}: "
                "a file there was changed after it was published; publish to a new folder"
            )
        written = folder.read(CHECKPOINT) != note.encode("utf-8")
        if written:  # last: a reader that fetched it finds every tile it needs
            folder.write(CHECKPOINT, note.encode("utf-8"))
        removed = _remove_superseded(folder, size)
    return Published(size, before, checkpoint.root_hash, tiles, bundles, removed, written)


class _CatalogLog:
    """The catalog's log as a :class:`TileSource`."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def leaves(self, lo: int, hi: int) -> Iterator[tuple[bytes, bytes]]:
        from evidence.commitment import is_commitment_entry
        from evidence.log import KIND_CERTIFICATE, leaves

        expected = lo
        for leaf in leaves(self.conn, lo, hi):
            if leaf.index != expected:
                raise EvidenceError(
                    f"leaf {min(leaf.index, expected)} is missing from the log or stored twice: "
                    "run `onceonly log verify`"
                )
            if leaf.entry is None:
                raise EvidenceError(f"leaf {leaf.index} ({leaf.kind}) has no stored entry")
            if leaf.kind == KIND_CERTIFICATE and not is_commitment_entry(leaf.entry):
                raise EvidenceError(
                    f"leaf {leaf.index} ({leaf.ref}) is a certificate as a version before commitments "
                    "logged it, its holder's name and ID number in clear: a log holding such leaves "
                    "must not be published (the folder's checkpoint was left as it was)"
                )
            yield leaf.entry, leaf.leaf_hash
            expected += 1
        if expected != hi:
            raise EvidenceError(f"leaf {expected} is missing from the log: run `onceonly log verify`")

    def nodes(self, height: int, lo: int, hi: int) -> list[bytes]:
        from evidence.log import node_hashes

        return node_hashes(self.conn, height, lo, hi)

    def root_at(self, size: int) -> bytes:
        from evidence.log import root_at

        return root_at(self.conn, size)


class _Folder:
    """The published folder: public files written atomically, public folders made as needed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._made: set[Path] = set()
        self._make(root)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One publisher at a time: an exclusive lock on the folder itself (no lock file to serve)."""
        fd = os.open(self.root, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def exists(self, path: str) -> bool:
        return (self.root / path).is_file()

    def read(self, path: str) -> bytes | None:
        try:
            return (self.root / path).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, path: str, data: bytes) -> None:
        target = self.root / path
        self._make(target.parent)
        write_atomic(target, data, mode=PUBLIC_FILE)

    def _make(self, folder: Path) -> None:
        """``mkdir -p`` with each new folder 755 (whatever the umask) and its creation durable."""
        if folder in self._made:
            return
        missing = []
        probe = folder
        while not probe.is_dir():
            missing.append(probe)
            probe = probe.parent
        for new in reversed(missing):
            with contextlib.suppress(FileExistsError):  # another process made it meanwhile
                new.mkdir()
            os.chmod(new, PUBLIC_DIR)
            fsync_dir(new.parent)  # a checkpoint written later must not outlive a tile's folder
        self._made.add(folder)


def _checkpoint_of(note: str, what: str) -> Checkpoint:
    """The checkpoint in a signed note, its signatures not checked (our own log's note)."""
    split = note.rfind("\n\n")
    try:
        if split < 0:
            raise VerificationFailed("not a signed note: no blank line before the signatures")
        return Checkpoint.parse(note[: split + 1])
    except VerificationFailed as exc:
        raise EvidenceError(f"{what}: {exc}") from None


def _published_size(folder: _Folder, checkpoint: Checkpoint, source: TileSource) -> int:
    """The size of the folder's checkpoint, checked to be a checkpoint of the same tree."""
    path = folder.root / CHECKPOINT
    data = folder.read(CHECKPOINT)
    if data is None:
        return 0
    old = _checkpoint_of(data.decode("utf-8", errors="replace"), str(path))
    if old.origin != checkpoint.origin:
        raise EvidenceError(
            f"{path} is a checkpoint of log {old.origin!r}, not of {checkpoint.origin!r}: "
            "publish each log to a folder of its own"
        )
    if old.size > checkpoint.size:
        raise EvidenceError(
            f"{path} is of size {old.size}, larger than this log's newest checkpoint ({checkpoint.size}): "
            "is the catalog a restored older copy?"
        )
    if source.root_at(old.size) != old.root_hash:
        raise EvidenceError(
            f"{path} (size {old.size}) has another root than this log at that size: "
            "the folder holds another tree; publish to a new folder"
        )
    return old.size


def _write_level_zero(folder: _Folder, source: TileSource, before: int, size: int) -> tuple[int, int]:
    """The level-0 tiles and entry bundles from the published size on that are missing."""
    todo: list[tuple[int, int, bool, bool]] = []  # index, width, tile missing, bundle missing
    for index in range(before // TILE_WIDTH, size // TILE_WIDTH + 1):
        width = tile_width(size, 0, index)
        if not width:
            continue
        tile = not folder.exists(tile_path(0, index, width))
        bundle = not folder.exists(bundle_path(index, width))
        if tile or bundle:
            todo.append((index, width, tile, bundle))
    tiles = bundles = 0
    for run in _runs(todo):
        first = run[0][0] * TILE_WIDTH
        stream = iter(source.leaves(first, min(size, (run[-1][0] + 1) * TILE_WIDTH)))
        for index, width, tile, bundle in run:
            start = index * TILE_WIDTH
            leaves = list(islice(stream, width))
            if len(leaves) != width:
                raise EvidenceError(f"the log gave {len(leaves)} leaves from {start}, the tile needs {width}")
            for offset, (entry, leaf_hash) in enumerate(leaves):
                if SHA256.leaf(entry) != leaf_hash:
                    raise EvidenceError(
                        f"leaf {start + offset}: its entry does not hash to its stored leaf hash; "
                        "run `onceonly log verify`"
                    )
            if bundle:
                folder.write(bundle_path(index, width), encode_bundle((e for e, _ in leaves), first=start))
                bundles += 1
            if tile:
                folder.write(tile_path(0, index, width), b"".join(h for _, h in leaves))
                tiles += 1
    return tiles, bundles


def _runs(todo: list[tuple[int, int, bool, bool]]) -> Iterator[list[tuple[int, int, bool, bool]]]:
    """Consecutive tiles, at most _READ_TILES at a time: one read of the catalog each."""
    run: list[tuple[int, int, bool, bool]] = []
    for item in todo:
        if run and (item[0] != run[-1][0] + 1 or len(run) == _READ_TILES):
            yield run
            run = []
        run.append(item)
    if run:
        yield run


def _write_upper_levels(folder: _Folder, source: TileSource, before: int, size: int) -> int:
    """The tiles of levels 1 and up from the published size on that are missing: stored nodes."""
    written = 0
    for level in range(1, tile_levels(size)):
        height = TILE_HEIGHT * level
        for index in range((before >> height) // TILE_WIDTH, (size >> height) // TILE_WIDTH + 1):
            width = tile_width(size, level, index)
            path = tile_path(level, index, width) if width else ""
            if not width or folder.exists(path):
                continue
            first = index * TILE_WIDTH
            hashes = source.nodes(height, first, first + width)
            if len(hashes) != width:
                raise EvidenceError(
                    f"the log gave {len(hashes)} nodes of level {height} from {first}, not {width}"
                )
            folder.write(path, b"".join(hashes))
            written += 1
    return written


def _remove_superseded(folder: _Folder, size: int) -> int:
    """Remove every partial tile and bundle whose full one is published; how many files went.

    The folders are walked (not only the newest indexes), so partial files left by a publish
    interrupted after its checkpoint go too.
    """
    removed = 0
    kinds: list[tuple[str, int]] = [
        (ENTRIES, 0),
        *((str(level), level) for level in range(tile_levels(size))),
    ]
    for name, level in kinds:
        base = folder.root / "tile" / name
        full = (size >> (TILE_HEIGHT * level)) // TILE_WIDTH
        for parent, dirs, _ in os.walk(base):
            for partial in [d for d in dirs if d.endswith(".p")]:
                here = Path(parent) / partial
                index = _parse_index(here.relative_to(base).as_posix()[: -len(".p")])
                complete = (here.parent / partial[: -len(".p")]).is_file()
                if index is None or index >= full or not complete:
                    continue
                for file in here.iterdir():
                    if file.is_file() and file.name.isdigit():
                        file.unlink()
                        removed += 1
                with contextlib.suppress(OSError):  # not empty: something else is in it
                    here.rmdir()
                fsync_dir(here.parent)
                dirs.remove(partial)
    return removed


def _parse_index(path: str) -> int | None:
    """N of ``x001/x234/067``; None if the path is not one."""
    groups = path.split("/")
    if not all(g[1:].isdigit() and len(g) == 4 and g[0] == "x" for g in groups[:-1]):
        return None
    if not (groups[-1].isdigit() and len(groups[-1]) == 3):
        return None
    return int("".join(g[-3:] for g in groups))


__all__ = [
    "CHECKPOINT",
    "ENTRIES",
    "MAX_ENTRY",
    "PUBLIC_DIR",
    "PUBLIC_FILE",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "Fetch",
    "Published",
    "TileLog",
    "TileSource",
    "bundle_path",
    "decode_bundle",
    "encode_bundle",
    "folder_fetch",
    "http_fetch",
    "open_tiles",
    "publish",
    "publish_tiles",
    "tile_levels",
    "tile_path",
    "tile_width",
]
