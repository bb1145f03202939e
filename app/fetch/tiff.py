"""The first IFD of a remote tiled GeoTIFF (COG), read from a few range requests, and a local copy of it
holding only some of its tiles.

The local copy keeps every tag of the remote full-resolution IFD byte for byte (compression,
predictor, GeoKeys, nodata, ...) and the fetched tiles' compressed bytes unchanged, so GDAL decodes
exactly the pixels it decodes from the remote file; tiles not fetched are sparse (offset and byte
count 0: GDAL reads them as nodata, or 0). Overviews and sub-IFDs are dropped (the build reads full
resolution only). Layout: header, IFD, tag values, then the tiles in index order (IFD first, like a
COG). Same byte order and flavour (classic or BigTIFF) as the remote file.

Sizes are checked before anything is allocated: a header claiming absurd dimensions, a tile count
over MAX_TILES, tag arrays over MAX_HEADER_BYTES, a tile over MAX_TILE_BYTES, or tiles past the end
of the object is refused (TiffRefused), so a hostile header cannot make us allocate or fetch much.
"""

import struct
from dataclasses import dataclass
from typing import Literal

import numpy as np

Endian = Literal["<", ">"]  # the file's byte order, as numpy spells it

MAX_TILES = 1 << 22  # 4 M tiles (a 10980² band in 16² tiles is 0.5 M)
MAX_HEADER_BYTES = 32 << 20
MAX_TILE_BYTES = 64 << 20
MAX_SIDE = 1 << 21
FIRST_READ = 16 << 10  # bytes asked for first: a COG keeps its IFDs and tag arrays at the start

TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}
UNSIGNED = {1: "B", 3: "H", 4: "I", 16: "Q", 13: "I", 18: "Q"}
WIDTH, HEIGHT, SAMPLES, PLANAR = 256, 257, 277, 284
TILE_W, TILE_H, TILE_OFFSETS, TILE_COUNTS = 322, 323, 324, 325
STRIP_OFFSETS, SUB_IFDS = 273, 330
DROPPED = {TILE_OFFSETS, TILE_COUNTS, SUB_IFDS}


class TiffRefused(ValueError):
    """Not a tiled TIFF we can copy, or one whose header claims sizes we refuse."""


@dataclass
class Entry:
    tag: int
    type: int
    count: int
    value: bytes  # raw, in the file's byte order


@dataclass
class TiffHeader:
    endian: Endian
    big: bool
    entries: list  # Entry, sorted by tag, tile arrays excluded
    width: int
    height: int
    tile_w: int
    tile_h: int
    planes: int  # separate sample planes (1 when pixel-interleaved)
    offsets: np.ndarray  # uint64 per tile
    counts: np.ndarray  # uint64 per tile
    size: int  # the remote object's size

    @property
    def across(self) -> int:
        return -(-self.width // self.tile_w)

    @property
    def down(self) -> int:
        return -(-self.height // self.tile_h)

    def tiles_in(self, row0: int, row1: int, col0: int, col1: int) -> set:
        """Indices of the tiles (every plane) that pixels [row0, row1) × [col0, col1) touch."""
        row0, col0 = max(0, row0), max(0, col0)
        row1, col1 = min(self.height, row1), min(self.width, col1)
        if row1 <= row0 or col1 <= col0:
            return set()
        per_plane = self.across * self.down
        return {p * per_plane + tr * self.across + tc
                for p in range(self.planes)
                for tr in range(row0 // self.tile_h, (row1 - 1) // self.tile_h + 1)
                for tc in range(col0 // self.tile_w, (col1 - 1) // self.tile_w + 1)}

    def present(self, indices) -> list:
        """The indices among `indices` that hold data in the remote file (sparse ones need nothing)."""
        return sorted(i for i in indices if self.counts[i] > 0)


def read_header(get) -> TiffHeader:
    """Parse IFD0 through get(start, end) -> (bytes, object size); a few range requests."""
    first, size = get(0, FIRST_READ)
    buf = _Buffer(first, get, size)
    order = first[:2]
    if order not in (b"II", b"MM"):
        raise TiffRefused("not a TIFF (no II/MM byte order mark)")
    e: Endian = "<" if order == b"II" else ">"
    magic = struct.unpack(e + "H", first[2:4])[0]
    if magic == 42:
        big, ifd = False, struct.unpack(e + "I", first[4:8])[0]
    elif magic == 43:
        big, ifd = True, struct.unpack(e + "Q", first[8:16])[0]
    else:
        raise TiffRefused(f"not a TIFF (magic {magic})")
    count_fmt, entry_len, off_fmt = ("Q", 20, "Q") if big else ("H", 12, "I")
    n = struct.unpack(e + count_fmt, buf.read(ifd, 8 if big else 2))[0]
    if n > 4096:
        raise TiffRefused(f"IFD claims {n} tags")
    table = buf.read(ifd + (8 if big else 2), n * entry_len)
    inline = 8 if big else 4
    raw = {}
    for k in range(n):
        rec = table[k * entry_len:(k + 1) * entry_len]
        tag, typ = struct.unpack(e + "HH", rec[:4])
        count = struct.unpack(e + ("Q" if big else "I"), rec[4:4 + (8 if big else 4)])[0]
        field = rec[(12 if big else 8):]
        if typ not in TYPE_SIZE:
            continue  # unknown type: GDAL ignores it too
        raw[tag] = (typ, count, field)
    if STRIP_OFFSETS in raw and TILE_OFFSETS not in raw:
        raise TiffRefused("stripped, not tiled (not a cloud-optimized GeoTIFF)")
    for tag in (WIDTH, HEIGHT, TILE_W, TILE_H, TILE_OFFSETS, TILE_COUNTS):
        if tag not in raw:
            raise TiffRefused(f"tag {tag} missing (not a tiled TIFF)")

    def value_bytes(tag) -> bytes:
        typ, count, field = raw[tag]
        nbytes = count * TYPE_SIZE[typ]
        if nbytes > MAX_HEADER_BYTES:
            raise TiffRefused(f"tag {tag} claims {nbytes} bytes")
        if nbytes <= inline:
            return field[:nbytes]
        return buf.read(struct.unpack(e + off_fmt, field)[0], nbytes)

    def scalar(tag, default=None):
        if tag not in raw:
            return default
        typ = raw[tag][0]
        if typ not in UNSIGNED:
            raise TiffRefused(f"tag {tag} has type {typ}")
        return struct.unpack(e + UNSIGNED[typ], value_bytes(tag)[:TYPE_SIZE[typ]])[0]

    width, height, tw, th = scalar(WIDTH), scalar(HEIGHT), scalar(TILE_W), scalar(TILE_H)
    samples, planar = scalar(SAMPLES, 1), scalar(PLANAR, 1)
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE and 0 < tw <= 1 << 16 and 0 < th <= 1 << 16):
        raise TiffRefused(f"absurd dimensions {width}x{height}, tiles {tw}x{th}")
    planes = samples if planar == 2 else 1
    expected = -(-width // tw) * -(-height // th) * planes
    if expected > MAX_TILES:
        raise TiffRefused(f"{expected} tiles (limit {MAX_TILES})")
    arrays = []
    for tag in (TILE_OFFSETS, TILE_COUNTS):
        typ, count, _ = raw[tag]
        if typ not in (3, 4, 16) or count != expected:
            raise TiffRefused(f"tag {tag}: {count} entries of type {typ} for {expected} tiles")
        arrays.append(np.frombuffer(value_bytes(tag), dtype=np.dtype(UNSIGNED[typ]).newbyteorder(e)).astype(np.uint64))
    offsets, counts = arrays
    if counts.max(initial=0) > MAX_TILE_BYTES:
        raise TiffRefused(f"a tile of {int(counts.max())} bytes (limit {MAX_TILE_BYTES})")
    if size is not None and np.any((counts > 0) & (offsets + counts > size)):
        raise TiffRefused(f"tiles past the end of the {size}-byte object")
    entries = [Entry(tag, typ, count, value_bytes(tag)) for tag, (typ, count, _) in sorted(raw.items())
               if tag not in DROPPED and TYPE_SIZE[typ] * count <= MAX_HEADER_BYTES and typ not in (13, 18)]
    return TiffHeader(e, big, entries, width, height, tw, th, planes, offsets, counts, size or 0)


class _Buffer:
    """Bytes of the object known so far; reads past them ask get() for more (bounded)."""

    def __init__(self, first: bytes, get, size):
        self.spans = [(0, first)]
        self.get, self.size = get, size

    def read(self, start: int, length: int) -> bytes:
        for s, data in self.spans:
            if s <= start and start + length <= s + len(data):
                return data[start - s:start - s + length]
        if self.size is not None and start + length > self.size:
            raise TiffRefused(f"header points past the end of the {self.size}-byte object")
        data, _ = self.get(start, start + length)
        self.spans.append((start, data))
        return data


def add_entry(header: TiffHeader, tag: int, typ: int, value: bytes) -> None:
    """Add or replace a tag (ASCII or bytes): e.g. GDAL_NODATA on a copy whose source lacks it."""
    header.entries = sorted([en for en in header.entries if en.tag != tag] +
                            [Entry(tag, typ, len(value) // TYPE_SIZE[typ], value)], key=lambda en: en.tag)


def layout(header: TiffHeader, indices) -> tuple[bytes, dict, int]:
    """(header bytes, {tile index: file offset}, file size) of a local copy holding `indices`."""
    e, big = header.endian, header.big
    indices = sorted(indices)
    n_tiles = len(header.offsets)
    arr_type = 16 if big else 4
    entries = header.entries + [Entry(TILE_OFFSETS, arr_type, n_tiles, b""), Entry(TILE_COUNTS, arr_type, n_tiles, b"")]
    entries.sort(key=lambda en: en.tag)
    head = 16 if big else 8
    entry_len, inline = (20, 8) if big else (12, 4)
    ifd_len = (8 if big else 2) + len(entries) * entry_len + (8 if big else 4)
    pos = head + ifd_len
    placed = {}
    for en in entries:
        nbytes = TYPE_SIZE[en.type] * en.count
        if nbytes > inline:
            pos += pos % 2
            placed[en.tag] = pos
            pos += nbytes
    pos = -(-pos // 16) * 16
    where, counts = {}, np.zeros(n_tiles, dtype=np.uint64)
    for i in indices:
        where[i] = pos
        counts[i] = header.counts[i]
        pos += int(header.counts[i])
    size = pos
    if not big and size >= 1 << 32:
        raise TiffRefused("local copy over 4 GiB in a classic TIFF")
    offsets = np.zeros(n_tiles, dtype=np.uint64)
    for i, p in where.items():
        offsets[i] = p
    arr_dtype = np.dtype("u8" if big else "u4").newbyteorder(e)
    values = {TILE_OFFSETS: offsets.astype(arr_dtype).tobytes(), TILE_COUNTS: counts.astype(arr_dtype).tobytes()}
    out = bytearray(size if not indices else where[indices[0]])
    if big:
        out[:16] = (b"II" if e == "<" else b"MM") + struct.pack(e + "HHHQ", 43, 8, 0, head)
    else:
        out[:8] = (b"II" if e == "<" else b"MM") + struct.pack(e + "HI", 42, head)
    p = head
    out[p:p + (8 if big else 2)] = struct.pack(e + ("Q" if big else "H"), len(entries))
    p += 8 if big else 2
    for en in entries:
        value = values.get(en.tag, en.value)
        rec = struct.pack(e + "HH", en.tag, en.type) + struct.pack(e + ("Q" if big else "I"), en.count)
        if en.tag in placed:
            rec += struct.pack(e + ("Q" if big else "I"), placed[en.tag])
            out[placed[en.tag]:placed[en.tag] + len(value)] = value
        else:
            rec += value.ljust(inline, b"\0")
        out[p:p + entry_len] = rec
        p += entry_len
    out[p:p + (8 if big else 4)] = bytes(8 if big else 4)  # no next IFD
    return bytes(out), where, size


def coalesce(spans, gap: int, max_len: int) -> list:
    """[(start, end, [(index, offset, length), ...])]: byte spans sorted and merged where the hole
    between neighbours is at most `gap` bytes and the merged request stays within max_len."""
    out = []
    for index, off, length in sorted(spans, key=lambda s: s[1]):
        if out and off - out[-1][1] <= gap and off + length - out[-1][0] <= max_len and off >= out[-1][1]:
            out[-1][1] = off + length
            out[-1][2].append((index, off, length))
        else:
            out.append([off, off + length, [(index, off, length)]])
    return [tuple(r) for r in out]
