"""The Codec interface (numcodecs style) and the self-describing message header.

Every encoded message is ``header + payload``. The header is 41 bytes, little-endian:
magic ``b"RRLC"``, format version, codec id, ``d``, levels, bucket size, norm, coding,
scale exponent and payload length, packed by ``_HEADER`` below; the field-by-field
layout is in ``docs/codecs.md``.

The byte length of a message is simply ``len(message)``: that is the number the rest
of ray_relu counts as bytes on the wire.
"""

from __future__ import annotations

import abc
import struct
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .._validation import check_int

__all__ = ["Codec", "CodecError", "Header", "HEADER_SIZE", "MAGIC", "FORMAT_VERSION",
           "MAX_DIM", "NORMS", "CODINGS"]

MAGIC = b"RRLC"
FORMAT_VERSION = 2            # 2: the former reserved field carries the scale exponent
# Cap on d: a hostile header cannot make a decoder allocate more than ~16 GiB of float64,
# and every index fits comfortably in int64 arithmetic.
MAX_DIM = 2 ** 31
_HEADER = struct.Struct("<4sB8sQIIBBhQ")
HEADER_SIZE = _HEADER.size
NORMS = {"none": 0, "l2": 1, "max": 2}
CODINGS = {"raw": 0, "elias": 1, "dense": 2, "elias-gamma": 3}
_NORM_NAMES = {v: k for k, v in NORMS.items()}
_CODING_NAMES = {v: k for k, v in CODINGS.items()}


class CodecError(ValueError):
    """An encoded message is malformed, truncated, or meant for another codec."""


class Header(NamedTuple):
    """Decoded message header (see the module docstring for the layout)."""

    codec_id: str
    d: int
    levels: int
    bucket_size: int
    norm: str
    coding: str
    payload_len: int
    exponent: int = 0

    def pack(self) -> bytes:
        """The header's 41 bytes."""
        return _HEADER.pack(MAGIC, FORMAT_VERSION, self.codec_id.encode("ascii"), self.d,
                            self.levels, self.bucket_size, NORMS[self.norm],
                            CODINGS[self.coding], self.exponent, self.payload_len)


def as_byte_array(buf: Any) -> np.ndarray:
    """View any bytes-like object as a 1-D uint8 array (no copy), or raise CodecError."""
    if isinstance(buf, np.ndarray):
        if buf.dtype != np.uint8 or buf.ndim != 1:
            raise CodecError(f"buf must be bytes-like or a 1-D uint8 array, got a "
                             f"{buf.dtype} array of shape {buf.shape}")
        return np.ascontiguousarray(buf)
    try:
        mv = memoryview(buf)
    except TypeError:
        raise CodecError(f"buf must be bytes, bytearray or memoryview, got "
                         f"{type(buf).__name__}") from None
    if not mv.c_contiguous:
        raise CodecError("buf must be a contiguous buffer")
    return np.frombuffer(mv.cast("B"), dtype=np.uint8)


def parse_header(data: np.ndarray) -> Header:
    """Parse and check the header of ``data`` (a uint8 array), independent of codec."""
    if data.size < HEADER_SIZE:
        raise CodecError(f"message too short: {data.size} bytes, a header alone is "
                         f"{HEADER_SIZE} bytes")
    magic, version, raw_id, d, levels, bucket, norm, coding, exponent, payload_len = \
        _HEADER.unpack(data[:HEADER_SIZE].tobytes())
    if magic != MAGIC:
        raise CodecError(f"not a ray_relu codec message: magic {magic!r}, expected {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise CodecError(f"unsupported format version {version}; this build reads "
                         f"version {FORMAT_VERSION}")
    codec_id = raw_id.rstrip(b"\0")
    if not codec_id or not all(0x21 <= c < 0x7f for c in codec_id) or b"\0" in codec_id:
        raise CodecError(f"corrupt codec id field {raw_id!r}")
    if not 1 <= d <= MAX_DIM:
        raise CodecError(f"impossible dimension d={d}; allowed 1..{MAX_DIM}")
    if norm not in _NORM_NAMES:
        raise CodecError(f"unknown norm code {norm} in header")
    if coding not in _CODING_NAMES:
        raise CodecError(f"unknown coding code {coding} in header")
    actual = data.size - HEADER_SIZE
    if payload_len != actual:
        what = "truncated" if actual < payload_len else "trailing bytes after payload"
        raise CodecError(f"message {what}: header announces a {payload_len}-byte payload, "
                         f"got {actual} bytes")
    return Header(codec_id.decode("ascii"), d, levels, bucket, _NORM_NAMES[norm],
                  _CODING_NAMES[coding], payload_len, exponent)


def check_vector(vec: Any, name: str = "vec") -> np.ndarray:
    """Return ``vec`` as a 1-D float32/float64 array with 1..MAX_DIM entries.

    Finiteness is checked by each codec where it is cheapest (often for free).
    """
    if isinstance(vec, np.ndarray) and vec.dtype in (np.float32, np.float64):
        arr = vec
    else:
        try:
            arr = np.asarray(vec)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a 1-D numeric array, got "
                             f"{type(vec).__name__}: {exc}") from None
        if arr.dtype.kind not in "biuf":            # no strings, objects, complex numbers
            raise ValueError(f"{name} must be a 1-D numeric array of real numbers, got "
                             f"{type(vec).__name__} of dtype {arr.dtype}")
        arr = arr.astype(np.float64, copy=False)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got an array of shape {arr.shape}")
    if not 1 <= arr.size <= MAX_DIM:
        raise ValueError(f"{name} must have between 1 and {MAX_DIM} entries, got {arr.size}")
    return arr


def non_finite_error(name: str, arr: np.ndarray) -> ValueError:
    """The ValueError for an input holding NaN or inf."""
    bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
    return ValueError(f"{name} must be finite, got {bad} NaN or inf value(s); "
                      f"allowed: finite real numbers")


class Codec(abc.ABC):
    """A gradient codec: ``encode`` a 1-D vector to bytes, ``decode`` bytes back.

    Subclasses set ``codec_id``, implement :meth:`encode`, :meth:`decode`,
    :meth:`_params` (the constructor arguments, used by :meth:`get_config`) and
    :meth:`variance_bound`.
    """

    codec_id: ClassVar[str]

    @abc.abstractmethod
    def encode(self, vec: np.ndarray, *, rng: np.random.Generator | None = None) -> bytes:
        """Encode a finite 1-D vector; ``rng`` is used only by stochastic codecs."""

    @abc.abstractmethod
    def decode(self, buf: bytes | bytearray | memoryview, *,
               max_dim: int | None = None) -> np.ndarray:
        """Decode a message to a new 1-D float64 array; raise CodecError if malformed.

        The output takes ``8 d`` bytes, ``d`` read from the header. A sparse message
        describing a long, mostly zero vector is legitimately short, so a hostile header
        could ask for up to ``8 * MAX_DIM`` bytes: pass ``max_dim`` (the largest ``d``
        you expect) to reject such messages with a CodecError before allocating.
        """

    @abc.abstractmethod
    def variance_bound(self, d: int) -> float:
        """``q`` such that ``E||decode(encode(v)) - v||^2 <= q ||v||^2`` for ``v`` in R^d."""

    @abc.abstractmethod
    def _params(self) -> dict[str, Any]:
        """Constructor keyword arguments reproducing this codec."""

    def get_config(self) -> dict[str, Any]:
        """JSON-able configuration: ``{"id": codec_id, **constructor arguments}``."""
        return {"id": self.codec_id, **self._params()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Codec":
        """Build a codec from :meth:`get_config` output."""
        config = dict(config)
        codec_id = config.pop("id", cls.codec_id)
        if codec_id != cls.codec_id:
            raise ValueError(f"config id {codec_id!r} does not match codec "
                             f"{cls.__name__} (id {cls.codec_id!r})")
        return cls(**config)

    # -- helpers for subclasses -------------------------------------------------------
    def _read_header(self, buf: Any, max_dim: int | None = None
                     ) -> tuple[Header, np.ndarray]:
        """Parse the header, check it names this codec and ``d <= max_dim``; return it
        and the payload bytes."""
        if max_dim is not None:
            max_dim = check_int("max_dim", max_dim, minimum=1)
        data = as_byte_array(buf)
        header = parse_header(data)
        if header.codec_id != self.codec_id:
            raise CodecError(f"message was encoded by codec {header.codec_id!r}, cannot "
                             f"decode it with codec {self.codec_id!r}")
        if max_dim is not None and header.d > max_dim:
            raise CodecError(f"message announces d={header.d} coordinates, more than "
                             f"max_dim={max_dim}")
        return header, data[HEADER_SIZE:]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Codec) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.get_config().items())))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"
