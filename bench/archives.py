"""The bundled archives' bytes: a gzipped tar whose member order, times and owners are fixed, so a seeded
builder (make_surface.py, make_tray.py) rebuilds its archive byte for byte."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path


def pack(files: dict[str, bytes], out: Path) -> str:
    """Write ``files`` (member name -> bytes) to ``out`` as .tar.gz; return its sha256."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(files[name]), 0, 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    packed = gzip.compress(buffer.getvalue(), compresslevel=9, mtime=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(packed)
    return hashlib.sha256(packed).hexdigest()
