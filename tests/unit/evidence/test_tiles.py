"""Static publication after C2SP tlog-tiles: the layout against the spec and published test data,
roots and proofs from tiles against the catalog's, incremental and crash-safe publication,
tampering, and a second process that reads only the folder."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from catalog import Catalog, log_nodes
from evidence.keys import SigningKey
from evidence.log import (
    TransparencyLog,
    latest_checkpoint,
    leaf_at,
    node_hashes,
    node_id,
    prove_consistency,
    prove_inclusion,
    root_at,
)
from evidence.merkle import SHA256, SM3, extend, root
from evidence.note import Checkpoint, parse_vkey
from evidence.tiles import (
    Published,
    TileLog,
    bundle_path,
    decode_bundle,
    encode_bundle,
    folder_fetch,
    http_fetch,
    open_tiles,
    publish,
    publish_tiles,
    tile_levels,
    tile_path,
    tile_width,
)
from onceonly.errors import EvidenceError, VerificationFailed

ORIGIN = "onceonly.example/test/tiles"
KEY = SigningKey.generate(ORIGIN)
VERIFIER = parse_vkey(KEY.vkey)


class MemoryLog:
    """A log in memory as publication reads one: entries, leaf hashes, nodes built by
    ``evidence.merkle.extend`` (fast where a catalog of the same size would be slow)."""

    def __init__(self, entries: Sequence[bytes]) -> None:
        self.entries = list(entries)
        self.hashes = SHA256.leaves(self.entries)
        self.levels = dict(enumerate(extend(0, [], self.hashes).levels, start=1))

    def leaves(self, lo: int, hi: int) -> Iterator[tuple[bytes, bytes]]:
        return zip(self.entries[lo:hi], self.hashes[lo:hi], strict=True)

    def nodes(self, height: int, lo: int, hi: int) -> list[bytes]:
        first, values = self.levels[height]
        return values[lo - first : hi - first]

    def root_at(self, size: int) -> bytes:
        return root(self.hashes[:size])

    def note(self, size: int, key: SigningKey = KEY, origin: str = ORIGIN) -> str:
        return key.sign_note(Checkpoint(origin, size, self.root_at(size)).to_body())


def numbered(count: int) -> list[bytes]:
    return [f'{{"n":{i}}}'.encode() for i in range(count)]


def files(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under ``folder``: (inode, mtime_ns, content) by relative path."""
    found = {}
    for path in folder.rglob("*"):
        if path.is_file():
            st = path.stat()
            found[path.relative_to(folder).as_posix()] = (st.st_ino, st.st_mtime_ns, path.read_bytes())
    return found


def flip(path: Path, at: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 1
    path.write_bytes(bytes(data))


@pytest.fixture
def private_umask() -> Iterator[None]:
    """The command line's umask (077): published files must still be readable by a web server."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


# ---------------------------------------------------------------------------- layout


def test_tile_paths_as_the_spec_writes_them() -> None:
    # c2sp.org/tlog-tiles "Merkle Tree": "index 1234067 will be encoded as x001/x234/067".
    assert tile_path(0, 1234067) == "tile/0/x001/x234/067"
    assert tile_path(0, 0) == "tile/0/000" and tile_path(0, 255) == "tile/0/255"
    assert tile_path(1, 999) == "tile/1/999" and tile_path(1, 1000) == "tile/1/x001/000"
    assert tile_path(15, 123456789, 41) == "tile/15/x123/x456/789.p/41"
    assert tile_path(63, 999999999999999999, 255) == "tile/63/x999/x999/x999/x999/x999/999.p/255"
    assert (
        bundle_path(0, 8) == "tile/entries/000.p/8" and bundle_path(1234067) == "tile/entries/x001/x234/067"
    )
    for bad in ((64, 0, 256), (-1, 0, 256), (0, -1, 256), (0, 0, 0), (0, 0, 257)):
        with pytest.raises(ValueError):
            tile_path(*bad)


def test_tile_widths_of_the_specs_examples(tmp_path: Path) -> None:
    # "a tree of size 70,000 will be represented by 273 full level 0 tiles, one partial level 0
    # tile of width 112, one full level 1 tile, one partial level 1 tile of width 17, and one
    # partial level 2 tile of width 1."
    assert [tile_width(70_000, 0, n) for n in (0, 272, 273, 274)] == [256, 256, 112, 0]
    assert [tile_width(70_000, 1, n) for n in (0, 1, 2)] == [256, 17, 0]
    assert [tile_width(70_000, 2, n) for n in (0, 1)] == [1, 0] and tile_levels(70_000) == 3
    # "a tree of size 256 will be represented by a full level 0 tile and a partial level 1 tile of width 1."
    assert (tile_width(256, 0, 0), tile_width(256, 0, 1), tile_width(256, 1, 0), tile_levels(256)) == (
        256,
        0,
        1,
        2,
    )
    assert tile_levels(0) == 0 and tile_levels(1) == tile_levels(255) == 1

    log = MemoryLog(numbered(70_000))
    published = publish_tiles(tmp_path, log.note(70_000), log)
    names = set(files(tmp_path))
    full = {tile_path(0, n) for n in range(273)} | {bundle_path(n) for n in range(273)}
    partial = {
        "tile/0/273.p/112",
        "tile/entries/273.p/112",
        "tile/1/000",
        "tile/1/001.p/17",
        "tile/2/000.p/1",
    }
    assert names == full | partial | {"checkpoint"}
    assert (published.tiles, published.bundles, published.tree_size) == (273 + 4, 274, 70_000)
    assert len((tmp_path / "tile/0/000").read_bytes()) == 8192
    assert (tmp_path / "tile/1/000").read_bytes() == b"".join(log.nodes(8, 0, 256))
    assert (tmp_path / "tile/2/000.p/1").read_bytes() == log.nodes(16, 0, 1)[0]


def test_entry_bundles_are_uint16_length_prefixed() -> None:
    assert encode_bundle([b"one", b"", b"x" * 300]) == b"\x00\x03one\x00\x00\x01\x2c" + b"x" * 300
    assert decode_bundle(b"\x00\x03one\x00\x00", 2) == [b"one", b""]
    with pytest.raises(EvidenceError, match="leaf 7: its entry of 65536 bytes is longer"):
        encode_bundle([b"ok", b"x" * 65536], first=6)
    assert decode_bundle(encode_bundle([b"y" * 65535]), 1) == [b"y" * 65535]
    for data, problem in (
        (b"\x00\x03on", "entry 0 is cut short"),
        (b"\x00\x03one\x00", "a length prefix is cut short after 1 entries"),
        (b"\x00\x03one", "1 entries where the tree has 2"),
    ):
        with pytest.raises(VerificationFailed, match=problem):
            decode_bundle(data, 2)


# Published test data: transparency-dev/tessera testdata/log (built by its testdata/build_log.sh:
# one entry per checkpoint, the 15 words below). SHA-256 (first 128 bits) of its tile/0/000.p/<k>
# and tile/entries/000.p/<k>, and the roots its signed checkpoints carry. Publishing the same
# entries one checkpoint at a time must give the same files.
TESSERA_WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eit", "nain", "ten"]
TESSERA_WORDS += ["ileven", "twelf", "threeten", "fourten", "fivten"]
TESSERA_FILES = {
    1: ("ccfdec58d220e811be8903398a8867fd", "217eb5c174b50240976ae2b9b7a2a213"),
    2: ("59e16c84b7f06104607760ad7916b953", "8d26204429edb13ff9b074af489a8e98"),
    3: ("6168c234ffb69c4c34476551c18dfc60", "17872b3223966b3b743f99f79fab73e8"),
    4: ("9959e95e8017bc56a4dbaa0afda926b2", "0f19d664a8c5a97ae47831b162c04ed6"),
    5: ("cde9addac215d77831b3c28a05c63ee8", "22c2e51f0b2aa8e6a9d3770d59942127"),
    6: ("1ef4dd027e37c71ac19b68502238c107", "51c4a9b199a7272c00d56d4f9e7346ca"),
    7: ("7294908b09b009d5a476bcd8c2086466", "545bd03b5a0b5be95070fa06c2acd61b"),
    8: ("92b3acf68d583ef1bfb61cf39bf9e89f", "a4413f345504eb3637bcab7f9f188baa"),
    9: ("0acd41c3ef3e5db1efbcf9952282808a", "eda107446820475a7382b1f3c34e0cb6"),
    10: ("6dcd13cc0a93d63bf0867206365aaf37", "81330784e6e1b74137a76d17f894317e"),
    11: ("a17105d6da8c53a8051d85b9fbe52dc8", "e4391087ee6b8f34bb4bdb292a590cbe"),
    12: ("9b8621625e84f41ca91f60c2c9068eef", "cbb703dd472823ec9c87022906047436"),
    13: ("e0e226249b7c08f78b9f20f1ec08dc2f", "0a0c8b26118fd8cc64c942ce11580a96"),
    14: ("014a1bdd661336c4d00606431741c06d", "bb309a3d4f081ad2cafac932239a831a"),
    15: ("93593af14d2cce39867d2e73fe4ca400", "9ac6a9fc9012f2b4d67ac26041933c11"),
}
TESSERA_ROOTS = {
    0: "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
    1: "0Nc2CrefWKseHj/mStd+LqC8B+NrX0btIiPt2SmN+ek=",
    8: "bC+VwvrJbalNVjfkdI8kUgs7mJoXrqiXCE7bgnD28pY=",
    15: "rKbDipCvhuX1GZ7g5BBe8sA6BbJ7ja/1nk427v383cs=",
}


def test_tessera_published_test_data(tmp_path: Path) -> None:
    origin = "example.com/log/testdata"
    key = SigningKey.generate(origin)
    log = MemoryLog([w.encode() for w in TESSERA_WORDS])
    for size in range(16):
        publish_tiles(tmp_path, log.note(size, key, origin), log)
        if size in TESSERA_ROOTS:
            assert base64.b64encode(log.root_at(size)).decode() == TESSERA_ROOTS[size]
    published = files(tmp_path)
    assert set(published) == {
        "checkpoint",
        *(f"tile/0/000.p/{k}" for k in TESSERA_FILES),
        *(f"tile/entries/000.p/{k}" for k in TESSERA_FILES),
    }
    for k, (tile, bundle) in TESSERA_FILES.items():
        assert hashlib.sha256(published[f"tile/0/000.p/{k}"][2]).hexdigest()[:32] == tile, k
        assert hashlib.sha256(published[f"tile/entries/000.p/{k}"][2]).hexdigest()[:32] == bundle, k
    tiles = open_tiles(folder_fetch(tmp_path), parse_vkey(key.vkey))
    assert base64.b64encode(tiles.verify_root()).decode() == TESSERA_ROOTS[15]
    assert [tiles.check_leaf(i) for i in range(15)] == [w.encode() for w in TESSERA_WORDS]


# ---------------------------------------------------------------------------- from the catalog


# Each append after the first adds a leaf logging the checkpoint before it: at least two leaves.
SIZES = (1, 254, 256, 258, 65_537)


def probes(size: int) -> list[int]:
    """Leaf indexes around every tile boundary of a tree of ``size``, and a few others."""
    picked = {0, size - 1, size // 2, size // 3}
    for boundary in (255, 256, 257, 511, 512, 65_535, 65_536):
        picked |= {boundary - 1, boundary, boundary + 1}
    return sorted(i for i in picked if 0 <= i < size)


def test_the_catalogs_log_published_at_tile_boundaries(catalog: Catalog, tmp_path: Path) -> None:
    """Sizes 0, 1, 254, 256, 258, 65537: the tiles give the catalog's roots and proofs, each
    publication writes only new files, and a full tile never changes once written."""
    folder = tmp_path / "public" / "log"
    log = TransparencyLog(KEY, ORIGIN)
    with catalog.read() as conn:
        assert publish(conn, folder) is None  # an empty log: nothing, not even the folder
    assert not folder.exists()

    before: dict[str, tuple[int, int, bytes]] = {}
    size = 0
    for target in SIZES:
        # Every append after the first begins with a leaf logging the checkpoint before it.
        first = size + 1 if size else size
        with catalog.begin() as conn:
            log.append(conn, [(b'{"n":%d}' % i, "lifecycle", f"e{i}") for i in range(first, target)])
        size = target
        with catalog.read() as conn:
            published = publish(conn, folder)
            newest = latest_checkpoint(conn)
        assert published is not None and newest is not None and published.tree_size == size
        now = files(folder)
        full = {p for p in now if not (".p/" in p or p == "checkpoint")}
        for path in full & set(before):  # a full tile or bundle is never written again
            assert now[path] == before[path], path
        new = set(now) - set(before)
        assert published.tiles + published.bundles == len(new - {"checkpoint"})
        gone = {p for p in before if ".p/" in p} - set(now)
        assert published.removed == len(gone)
        for path in gone:  # removed only once the full tile is there
            assert path.split(".p/")[0] in now
        assert now["checkpoint"][2] == newest[1].encode()

        tiles = open_tiles(folder_fetch(folder), VERIFIER)
        with catalog.read() as conn:
            assert tiles.verify_root() == root_at(conn, size) == published.root_hash
            for index in probes(size):
                assert tiles.check_leaf(index) == leaf_at(conn, index).entry
                for old in {index + 1, size // 2 + 1, size}:
                    if index < old <= size:
                        assert tiles.inclusion_proof(index, old) == prove_inclusion(conn, index, old), (
                            index,
                            old,
                        )
            for old in (*SIZES, 3, 100, 65_536):
                if old <= size:
                    assert tiles.consistency_proof(old) == prove_consistency(conn, old, size), old
                    assert tiles.root(old) == root_at(conn, old)
        tiles.check_all()
        before = now

    # Publishing again with nothing new writes nothing, not even the checkpoint.
    with catalog.read() as conn:
        again = publish(conn, folder)
    assert again == Published(size, size, published.root_hash, 0, 0, 0, False)
    assert files(folder) == before
    assert tile_levels(size) == 3 and set(before) >= {
        "tile/0/255",
        "tile/0/256.p/1",
        "tile/1/000",
        "tile/2/000.p/1",
    }
    assert not any(p.startswith("tile/0/000.p") or p.startswith("tile/1/000.p") for p in before)


def test_upper_tiles_are_the_catalogs_stored_nodes(catalog: Catalog) -> None:
    log = TransparencyLog(KEY, ORIGIN)
    with catalog.begin() as conn:
        appended = log.append(conn, [(b"%d" % i, "lifecycle", f"e{i}") for i in range(600)])
    memory = MemoryLog([b"%d" % i for i in range(600)])
    with catalog.read() as conn:
        assert node_hashes(conn, 8, 0, 2) == memory.nodes(8, 0, 2) and node_hashes(conn, 8, 1, 1) == []
        assert node_hashes(conn, 4, 30, 37) == memory.nodes(4, 30, 37)
        with pytest.raises(EvidenceError, match=r"missing node \(8, 2\)"):
            node_hashes(conn, 8, 0, 3)
        with pytest.raises(ValueError, match="levels 4 and up"):
            node_hashes(conn, 3, 0, 1)
    with catalog.begin() as conn:
        conn.execute(sa.delete(log_nodes).where(log_nodes.c.node_id == node_id(4, 33)))
    with catalog.read() as conn, pytest.raises(EvidenceError, match=r"missing node \(4, 33\)"):
        node_hashes(conn, 4, 30, 37)
    assert appended.tree_size == 600


def test_an_sm3_log_is_refused(catalog: Catalog, tmp_path: Path) -> None:
    with catalog.begin() as conn:
        TransparencyLog(KEY, ORIGIN, hasher=SM3).append(conn, [(b"a", "lifecycle", "e0")])
    with catalog.read() as conn, pytest.raises(EvidenceError, match=r"hashes with sm3.*SHA-256 only"):
        publish(conn, tmp_path / "log")
    assert not (tmp_path / "log").exists()


def test_a_log_holding_certificates_in_clear_is_not_published(catalog: Catalog, tmp_path: Path) -> None:
    """A certificate leaf an earlier version wrote is the certificate itself (holder's name and
    ID): publishing stops at it, before its bundle or the checkpoint is written."""
    person = "120114199003071234"
    in_clear = b'{"holder":{"id":"%s","name":"\xe5\xbc\xa0\xe4\xb8\x89"},"id":"1.2.156.3005.2.x"}' % (
        person.encode()
    )
    with catalog.begin() as conn:
        TransparencyLog(KEY, ORIGIN).append(conn, [(in_clear, "certificate", "1.2.156.3005.2.x")])
    folder = tmp_path / "log"
    with (
        catalog.read() as conn,
        pytest.raises(EvidenceError, match=r"leaf 0 .* in clear: .* must not be published"),
    ):
        publish(conn, folder)
    assert not any(person.encode() in p.read_bytes() for p in folder.rglob("*") if p.is_file())
    assert not (folder / "checkpoint").exists()


# ---------------------------------------------------------------------------- the folder


def test_files_are_public_and_the_folder_is_served_as_is(tmp_path: Path, private_umask: None) -> None:
    log = MemoryLog(numbered(300))
    folder = tmp_path / "www" / "log"
    publish_tiles(folder, log.note(300), log)
    for path in [folder, *folder.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))
    assert stat.S_IMODE((tmp_path / "www").stat().st_mode) == 0o755
    assert not [p for p in folder.rglob(".*")]  # no lock or temporary file left to be served


def test_a_reader_with_an_older_checkpoint_falls_back_to_the_full_tile(tmp_path: Path) -> None:
    log = MemoryLog(numbered(700))
    publish_tiles(tmp_path, log.note(300), log)
    old = Checkpoint(ORIGIN, 300, log.root_at(300))
    publish_tiles(tmp_path, log.note(700), log)
    assert not (tmp_path / "tile/0/001.p").exists() and not (tmp_path / "tile/entries/001.p").exists()
    assert (tmp_path / "tile/0/002.p/188").exists()
    reader = TileLog(folder_fetch(tmp_path), old)  # partial tile 001.p/44 of size 300 is gone
    assert reader.verify_root() == log.root_at(300)
    assert reader.check_leaf(299) == b'{"n":299}'
    with pytest.raises(EvidenceError, match="size 301 is outside the published tree of 300"):
        reader.root(301)


def test_an_interrupted_publication_leaves_the_old_checkpoint_whole(tmp_path: Path) -> None:
    log = MemoryLog(numbered(2000))
    publish_tiles(tmp_path, log.note(300), log)
    published = files(tmp_path)

    class Failing(MemoryLog):
        def leaves(self, lo: int, hi: int) -> Iterator[tuple[bytes, bytes]]:
            for i, pair in enumerate(super().leaves(lo, hi)):
                if lo + i == 1000:
                    raise OSError("disk full")
                yield pair

    with pytest.raises(OSError, match="disk full"):
        publish_tiles(tmp_path, log.note(2000), Failing(log.entries))
    after = files(tmp_path)
    assert after["checkpoint"] == published["checkpoint"]
    assert {p for p in after if p not in published} == {
        tile_path(0, 1),
        tile_path(0, 2),
        bundle_path(1),
        bundle_path(2),
    }
    assert open_tiles(folder_fetch(tmp_path), VERIFIER).verify_root() == log.root_at(300)

    finished = publish_tiles(tmp_path, log.note(2000), log)
    # Level 0: tiles 3 to 6 and 7.p/208 (1 and 2 are there), and tile/1/000.p/7.
    assert (finished.previous_size, finished.tiles, finished.bundles, finished.removed) == (300, 6, 5, 2)
    assert all(after[p] == files(tmp_path)[p] for p in (tile_path(0, 1), bundle_path(2)))
    open_tiles(folder_fetch(tmp_path), VERIFIER).check_all()


def test_publish_refuses_a_folder_of_another_tree(tmp_path: Path) -> None:
    log = MemoryLog(numbered(50))
    publish_tiles(tmp_path, log.note(40), log)
    with pytest.raises(
        EvidenceError, match=r"a checkpoint of log 'onceonly.example/test/tiles', not of 'other/log'"
    ):
        publish_tiles(tmp_path, log.note(50, SigningKey.generate("other/log"), "other/log"), log)
    forked = MemoryLog([b"fork", *numbered(50)[1:]])
    with pytest.raises(EvidenceError, match=r"checkpoint \(size 40\) has another root than this log"):
        publish_tiles(tmp_path, forked.note(50), forked)
    publish_tiles(tmp_path, log.note(50), log)
    with pytest.raises(EvidenceError, match="is of size 50, larger than this log's newest checkpoint"):
        publish_tiles(tmp_path, log.note(45), log)


def test_publish_signs_off_no_folder_changed_since(tmp_path: Path) -> None:
    log = MemoryLog(numbered(70_000))
    publish_tiles(tmp_path, log.note(66_000), log)
    flip(tmp_path / "tile/2/000.p/1")  # still the tile of size 70,000: kept, and on the root's path
    with pytest.raises(EvidenceError, match="give another root than the checkpoint of size 70000"):
        publish_tiles(tmp_path, log.note(70_000), log)
    assert (tmp_path / "checkpoint").read_text() == log.note(66_000)


# ---------------------------------------------------------------------------- tampering


@pytest.fixture
def published(tmp_path: Path) -> tuple[Path, MemoryLog]:
    log = MemoryLog(numbered(70_000))
    publish_tiles(tmp_path, log.note(70_000), log)
    return tmp_path, log


def test_a_changed_level_zero_tile_is_detected(published: tuple[Path, MemoryLog]) -> None:
    folder, _ = published
    flip(folder / "tile/0/001", 32 * 5)  # leaf 261's hash
    tiles = open_tiles(folder_fetch(folder), VERIFIER)
    tiles.verify_root()  # the root comes from the level-1 tile: a leaf's proof or an audit finds it
    with pytest.raises(
        VerificationFailed, match="leaf 260: inclusion proof does not lead to the expected root"
    ):
        tiles.check_leaf(260)
    tiles.check_leaf(600)  # leaves whose proofs do not use it stay provable
    with pytest.raises(VerificationFailed, match="tile/0/001: its hashes do not give hash 1 of tile/1/000"):
        tiles.check_all()


def test_a_changed_entry_bundle_is_detected(published: tuple[Path, MemoryLog]) -> None:
    folder, _ = published
    path = folder / "tile/entries/273.p/112"
    entries = decode_bundle(path.read_bytes(), 112)
    entries[3] = b'{"n":69891, "forged": true}'
    path.write_bytes(encode_bundle(entries))
    tiles = open_tiles(folder_fetch(folder), VERIFIER)
    with pytest.raises(VerificationFailed, match="leaf 69891: inclusion proof does not lead"):
        tiles.check_leaf(69891)
    with pytest.raises(VerificationFailed, match=r"tile/entries/273.p/112: entry 3 \(leaf 69891\)"):
        tiles.check_all()
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(VerificationFailed, match=r"tile/entries/273.p/112: entry 111 is cut short"):
        open_tiles(folder_fetch(folder), VERIFIER).check_leaf(69999)


@pytest.mark.parametrize("path", ["tile/1/001.p/17", "tile/2/000.p/1", "tile/0/273.p/112"])
def test_a_changed_tile_on_the_roots_path_fails_the_root(
    published: tuple[Path, MemoryLog], path: str
) -> None:
    folder, _ = published
    flip(folder / path)
    with pytest.raises(
        VerificationFailed, match=r"the tiles give root .* for size 70000; the signed checkpoint says"
    ):
        open_tiles(folder_fetch(folder), VERIFIER).verify_root()


def test_a_full_tile_below_is_checked_against_the_tile_above(published: tuple[Path, MemoryLog]) -> None:
    folder, _ = published
    tile = folder / "tile/0/010"
    tile.write_bytes(tile.read_bytes()[:-32] + SHA256.leaf(b"forged"))
    (folder / "tile/entries/010").write_bytes(
        encode_bundle([*decode_bundle((folder / "tile/entries/010").read_bytes(), 256)[:-1], b"forged"])
    )
    tiles = open_tiles(folder_fetch(folder), VERIFIER)
    with pytest.raises(VerificationFailed, match="leaf 2815: inclusion proof does not lead"):
        tiles.check_leaf(2815)
    with pytest.raises(VerificationFailed, match="tile/0/010: its hashes do not give hash 10 of tile/1/000"):
        tiles.check_all()
    flip(folder / "tile/1/000")  # not on the root's path (tile/2/000.p/1 stands for it)
    tiles = open_tiles(folder_fetch(folder), VERIFIER)
    tiles.verify_root()
    with pytest.raises(
        VerificationFailed, match=r"tile/1/000: its hashes do not give hash 0 of tile/2/000.p/1"
    ):
        tiles.check_all()


def test_a_short_tile_a_missing_tile_and_a_bad_checkpoint(published: tuple[Path, MemoryLog]) -> None:
    folder, log = published
    (folder / "tile/2/000.p/1").write_bytes(b"\x00" * 31)
    with pytest.raises(VerificationFailed, match=r"tile/2/000.p/1: 31 bytes, a tile of its width has 32"):
        open_tiles(folder_fetch(folder), VERIFIER).verify_root()
    (folder / "tile/2/000.p/1").unlink()
    with pytest.raises(EvidenceError, match=r"tile/2/000.p/1 is not published, nor its full tile"):
        open_tiles(folder_fetch(folder), VERIFIER).verify_root()
    with pytest.raises(VerificationFailed, match="checkpoint: note has no signature by other/log"):
        open_tiles(folder_fetch(folder), parse_vkey(SigningKey.generate("other/log").vkey))
    forged = log.note(70_000).replace("\n70000\n", "\n69999\n")
    (folder / "checkpoint").write_text(forged)
    with pytest.raises(VerificationFailed, match="checkpoint: bad signature"):
        open_tiles(folder_fetch(folder), VERIFIER)
    (folder / "checkpoint").unlink()
    with pytest.raises(EvidenceError, match="checkpoint is not published"):
        open_tiles(folder_fetch(folder), VERIFIER)


def test_consistency_with_an_older_checkpoint(tmp_path: Path) -> None:
    log = MemoryLog(numbered(1000))
    publish_tiles(tmp_path, log.note(1000), log)
    tiles = open_tiles(folder_fetch(tmp_path), VERIFIER)
    for old in (0, 1, 255, 256, 257, 999, 1000):
        tiles.check_consistency(Checkpoint(ORIGIN, old, log.root_at(old)))
    with pytest.raises(VerificationFailed, match="consistency proof does not lead to the old root"):
        tiles.check_consistency(Checkpoint(ORIGIN, 300, MemoryLog([b"x", *numbered(1000)[1:]]).root_at(300)))
    with pytest.raises(VerificationFailed, match="old checkpoint is of log 'other'"):
        tiles.check_consistency(Checkpoint("other", 300, log.root_at(300)))
    with pytest.raises(VerificationFailed, match="size 1001, larger than the published 1000"):
        tiles.check_consistency(Checkpoint(ORIGIN, 1001, log.root_at(1000)))


# ---------------------------------------------------------------------------- other readers


def test_read_over_http(published: tuple[Path, MemoryLog]) -> None:
    folder, _ = published
    asked: list[str] = []

    def serve(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if request.url.path == "/broken/checkpoint":
            return httpx.Response(503)
        path = folder / request.url.path.removeprefix("/log/")
        return httpx.Response(200, content=path.read_bytes()) if path.is_file() else httpx.Response(404)

    with httpx.Client(transport=httpx.MockTransport(serve)) as client:
        tiles = open_tiles(http_fetch("https://example.org/log/", client), VERIFIER)
        tiles.verify_root()
        assert tiles.check_leaf(65_536) == b'{"n":65536}'
        with pytest.raises(FileNotFoundError, match=r"https://example.org/log/tile/9/000"):
            http_fetch("https://example.org/log", client)("tile/9/000")
        with pytest.raises(EvidenceError, match=r"https://example.org/broken/checkpoint: HTTP 503"):
            open_tiles(http_fetch("https://example.org/broken", client), VERIFIER)
    assert asked[0] == "/log/checkpoint" and len(asked) < 20  # a proof fetches a handful of tiles


def test_a_second_process_reading_only_the_folder_computes_the_catalogs_root(
    catalog: Catalog, tmp_path: Path
) -> None:
    log = TransparencyLog(KEY, ORIGIN)
    with catalog.begin() as conn:
        log.append(conn, [(b"%d" % i, "lifecycle", f"e{i}") for i in range(1000)])
    with catalog.begin() as conn:
        log.append(conn, [(b"%d" % i, "lifecycle", f"e{i}") for i in range(1001, 1300)])  # after a checkpoint
    folder = tmp_path / "published"
    with catalog.read() as conn:
        publish(conn, folder)
        newest = latest_checkpoint(conn)
    assert newest is not None
    reader = (
        "import sys; from pathlib import Path; from evidence.note import parse_vkey; "
        "from evidence.tiles import folder_fetch, open_tiles; "
        "tiles = open_tiles(folder_fetch(Path(sys.argv[1])), parse_vkey(sys.argv[2])); "
        "print(tiles.size, tiles.verify_root().hex())"
    )
    done = subprocess.run(
        [sys.executable, "-c", reader, str(folder), KEY.vkey],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    expected = Checkpoint.parse(newest[1].split("\n\n")[0] + "\n")
    assert done.stdout.split() == ["1300", expected.root_hash.hex()]
