"""Where files live: local paths and URIs (``file://``, ``s3://``, ...) through ``pyarrow.fs``.

Data sources and checkpoints both name a location the same way: a local path, or a URI
that :func:`pyarrow.fs.FileSystem.from_uri` resolves. A caller that already holds a
``pyarrow.fs.FileSystem`` (credentials, a custom endpoint) passes it with a path on it.

Writes are atomic where the filesystem allows it: a local file is written to a
temporary name, flushed to disk and renamed over the target, so a crash mid-write leaves
the previous file intact. Object stores (S3, GCS) have no rename; there a single PUT of
the whole object is already all-or-nothing, so the object is written in one stream and
never appears half-written to a reader.
"""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

__all__ = ["resolve_location", "read_bytes", "write_bytes", "exists", "describe"]


def resolve_location(location: str | os.PathLike,
                     filesystem: pafs.FileSystem | None = None
                     ) -> tuple[pafs.FileSystem, str]:
    """Return ``(filesystem, path)`` for a local path or a URI.

    With ``filesystem`` given, ``location`` is a path on it. A string with ``://`` is a
    URI resolved by pyarrow; anything else is a local path (made absolute, so workers
    on the same host read the same file whatever their working directory).
    """
    if filesystem is not None:
        if not isinstance(filesystem, pafs.FileSystem):
            raise TypeError(f"filesystem must be a pyarrow.fs.FileSystem, got "
                            f"{type(filesystem).__name__}")
        return filesystem, str(location)
    if not isinstance(location, (str, os.PathLike)):
        raise TypeError(f"a location must be a path or a URI string, got "
                        f"{type(location).__name__}")
    text = os.fspath(location)
    if "://" in text:
        try:
            return pafs.FileSystem.from_uri(text)
        except (pa.ArrowException, ValueError, OSError) as exc:
            raise ValueError(f"cannot resolve {text!r}: {exc}; allowed: a local path, "
                             f"file://, s3://, gs://, hdfs:// or another URI pyarrow "
                             f"resolves") from None
    return pafs.LocalFileSystem(), os.path.abspath(text)


def describe(filesystem: pafs.FileSystem, path: str) -> str:
    """A location as users wrote it: the path for local files, ``scheme://path`` else."""
    if isinstance(filesystem, pafs.LocalFileSystem):
        return path
    return f"{filesystem.type_name}://{path}"


def exists(filesystem: pafs.FileSystem, path: str) -> bool:
    """True if ``path`` is a file on ``filesystem``."""
    return filesystem.get_file_info(path).type == pafs.FileType.File


def read_bytes(filesystem: pafs.FileSystem, path: str) -> bytes:
    """The whole content of a file (raises FileNotFoundError if there is none)."""
    if not exists(filesystem, path):
        raise FileNotFoundError(f"not found: {describe(filesystem, path)}")
    with filesystem.open_input_stream(path) as f:
        return f.read()


def write_bytes(filesystem: pafs.FileSystem, path: str, data: Any) -> None:
    """Write ``data`` to ``path``, atomically where the filesystem allows it.

    Local files: temporary name, fsync, rename. Other filesystems: one output stream,
    which object stores publish only when it closes (see the module docstring).
    """
    if isinstance(filesystem, pafs.LocalFileSystem):
        tmp = os.path.join(os.path.dirname(path) or ".",
                           f".{os.path.basename(path)}.tmp-{os.getpid()}")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        filesystem.create_dir(parent, recursive=True)
    with filesystem.open_output_stream(path) as f:
        f.write(data)
