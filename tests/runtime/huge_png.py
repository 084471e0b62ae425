"""A huge but small PNG (e.g. 20000x20000, a few MB) written without the image in memory.

Rows come in blocks of identical rows; each block is deflated once and repeated (a full flush
makes a compressed block independent of what precedes it), so writing takes about a second.
"""

import struct
import zlib

import numpy as np

BLOCK = 100  # rows per repeated block


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def write_huge_png(path, size: int) -> None:
    """size x size 8-bit RGB: a horizontal gradient with a bright band (a 'defect') in the middle.
    ``size`` must be a multiple of 100."""
    assert size % BLOCK == 0
    x = np.arange(size, dtype=np.uint64)
    normal = np.empty((size, 3), np.uint8)
    normal[:, 0] = (x * 255 // size).astype(np.uint8)
    normal[:, 1], normal[:, 2] = 90, 128
    defect = normal.copy()
    defect[size // 2 - size // 20 : size // 2 + size // 20] = 255
    blocks = {}
    for name, row in (("normal", normal), ("defect", defect)):
        raw = (b"\x00" + row.tobytes()) * BLOCK  # filter byte 0 + RGB per row
        deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        blocks[name] = (deflate.compress(raw) + deflate.flush(zlib.Z_FULL_FLUSH), raw)
    band = range(size // 2 // BLOCK - 2, size // 2 // BLOCK + 2)
    order = ["defect" if b in band else "normal" for b in range(size // BLOCK)]
    adler = 1
    for name in order:
        adler = zlib.adler32(blocks[name][1], adler)
    stream = (
        b"\x78\x9c" + b"".join(blocks[name][0] for name in order) + b"\x03\x00" + struct.pack(">I", adler)
    )
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)))
        f.write(_chunk(b"IDAT", stream) + _chunk(b"IEND", b""))
