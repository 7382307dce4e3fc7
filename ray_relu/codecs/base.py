"""The Codec contract (numcodecs style) and the shared message frame.

Writing a codec
---------------
A codec is a :class:`Codec` subclass. It must provide three things:

``codec_id``
    A class attribute: the codec's name, 1-8 printable ASCII characters without
    spaces (it is written into message headers and names the codec in configs).
``encode(vec, rng=None) -> bytes``
    Encode a finite 1-D float vector. ``rng`` is a ``numpy.random.Generator`` that a
    stochastic codec must draw all its randomness from: the engine passes the stream
    of ``(seed, t, k)``, so a replayed round gives the same bytes (deterministic codecs
    ignore it). ``len`` of the bytes is what ray_relu counts as bytes on the wire.
``decode(buf, max_dim=None) -> numpy.ndarray``
    The float64 vector a message stands for. It should raise :class:`CodecError` for
    a malformed message and, when ``max_dim`` is given, for one announcing more
    coordinates, before allocating.

Everything else has a working default:

``get_config()``
    ``{"id": codec_id, **{name: getattr(self, name)}}`` for every named parameter of
    the constructor (``__init__``), scikit-learn's convention: store each constructor
    argument as an attribute of the same name and the default is right. A codec
    that cannot do so overrides ``get_config`` (and ``from_config``).
``from_config(config)``
    ``cls(**parameters)`` after checking the id and that every key is a constructor
    parameter (a ValueError names the unknown keys and the allowed ones).
``variance_bound(d)``
    ``q`` with ``E||decode(encode(v)) - v||^2 <= q ||v||^2`` on ``R^d``, used by the
    default step size. The default returns None ("unknown"); the run settings then
    assume ``ray_relu.settings.UNKNOWN_VARIANCE`` (an error as large as the gradient,
    which about halves the default step). Pass ``step_size`` to do better.
``max_message_bytes(d)``
    An upper bound on ``len(encode(v))`` for every ``v`` in ``R^d``, or None when
    unknown (the default). Master mode uses it to know, before a round's messages
    arrive, that relaying them beats shipping ``w``, and then submits rounds ahead.
``__eq__``, ``__hash__``, ``__repr__``
    From ``get_config()``: codecs with equal configs are equal;
    ``QSGD(levels=4, ...)``-style repr.

A codec instance is a value: ``fit(problem, codec=MyCodec(...))`` pickles it to the
Ray actors, so a class defined in a script or a notebook works on a cluster (Ray
pickles such classes by value). Registering it (:func:`register_codec`) is needed only
to build it by name.

The message frame
-----------------
The shipped codecs frame every message as ``header + payload``, and a user codec may
do the same with :meth:`Codec.pack_message` and :meth:`Codec.read_message` (then
messages are self-describing and a foreign one is refused by name). The header is 29
bytes, little-endian, packed by ``_HEADER`` below: magic ``b"RRLC"``, format version,
codec id, ``d`` and the payload length. Parameters belong to the codecs: QSGD opens
its payload with its own parameter block, fp16 with its scale exponent; fp32 and fp64
have none. The field-by-field layouts are in ``docs/codecs.md``.
"""

from __future__ import annotations

import abc
import inspect
import json
import struct
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .._validation import check_int

__all__ = ["Codec", "CodecError", "Header", "HEADER_SIZE", "MAGIC", "FORMAT_VERSION",
           "MAX_DIM", "check_codec_id", "constructor_parameters", "split_block"]

MAGIC = b"RRLC"
# 3: codec parameters moved from the shared header to the payloads; 4: QSGD coding 4
# (rANS), which coding="auto" writes where it is shortest
FORMAT_VERSION = 4
# Cap on d: a hostile header cannot make a decoder allocate more than ~16 GiB of float64,
# and every index fits comfortably in int64 arithmetic.
MAX_DIM = 2 ** 31
_HEADER = struct.Struct("<4sB8sQQ")
HEADER_SIZE = _HEADER.size


class CodecError(ValueError):
    """An encoded message is malformed, truncated, or meant for another codec."""


class Header(NamedTuple):
    """Decoded message header (see the module docstring for the layout)."""

    codec_id: str
    d: int
    payload_len: int

    def pack(self) -> bytes:
        """The header's 29 bytes."""
        return _HEADER.pack(MAGIC, FORMAT_VERSION, self.codec_id.encode("ascii"), self.d,
                            self.payload_len)


def check_codec_id(codec_id: Any, owner: str = "codec") -> str:
    """``codec_id`` if it is 1-8 printable ASCII characters without spaces, else a
    ValueError naming ``owner`` and what is allowed."""
    if not (isinstance(codec_id, str) and 1 <= len(codec_id) <= 8 and codec_id.isascii()
            and codec_id.isprintable() and " " not in codec_id):
        raise ValueError(f"{owner}: codec_id must be 1-8 printable ASCII characters without "
                         f"spaces, got {codec_id!r}")
    return codec_id


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
    magic, version, raw_id, d, payload_len = _HEADER.unpack(data[:HEADER_SIZE].tobytes())
    if magic != MAGIC:
        raise CodecError(f"not a ray_relu codec message: magic {magic!r}, expected {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise CodecError(f"unsupported format version {version}; this build reads "
                         f"version {FORMAT_VERSION}")
    codec_id = raw_id.rstrip(b"\0")
    if not codec_id or not all(0x21 <= c < 0x7f for c in codec_id):
        raise CodecError(f"corrupt codec id field {raw_id!r}")
    if not 1 <= d <= MAX_DIM:
        raise CodecError(f"impossible dimension d={d}; allowed 1..{MAX_DIM}")
    actual = data.size - HEADER_SIZE
    if payload_len != actual:
        what = "truncated" if actual < payload_len else "trailing bytes after payload"
        raise CodecError(f"message {what}: header announces a {payload_len}-byte payload, "
                         f"got {actual} bytes")
    return Header(codec_id.decode("ascii"), d, payload_len)


def split_block(payload: np.ndarray, block: struct.Struct, what: str
                ) -> tuple[tuple, np.ndarray]:
    """Unpack the fixed ``block`` that opens ``payload``; return its fields and the rest.

    A payload shorter than the block raises CodecError naming ``what`` it holds.
    """
    if payload.size < block.size:
        raise CodecError(f"payload of {payload.size} bytes cannot hold the "
                         f"{block.size}-byte {what}")
    return block.unpack(payload[:block.size].tobytes()), payload[block.size:]


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

    Subclasses set ``codec_id`` and implement :meth:`encode` and :meth:`decode`; the
    rest is optional (see the module docstring for the contract and its defaults).
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

    def encode_with_value(self, vec: np.ndarray, *, rng: np.random.Generator | None = None
                          ) -> tuple[bytes, np.ndarray]:
        """:meth:`encode`, and the vector :meth:`decode` returns for that message (bit
        for bit): a sender that uses its own message spares decoding it. The default
        decodes; a codec that knows the decoded values while encoding overrides it."""
        message = self.encode(vec, rng=rng)
        return message, self.decode(message)

    def variance_bound(self, d: int) -> float | None:
        """``q`` such that ``E||decode(encode(v)) - v||^2 <= q ||v||^2`` for ``v`` in
        R^d, or None when unknown (the default; the run settings then assume
        ``ray_relu.settings.UNKNOWN_VARIANCE``)."""
        return None

    def max_message_bytes(self, d: int) -> int | None:
        """An upper bound on ``len(encode(v))`` for ``v`` in R^d, or None when unknown
        (the default)."""
        return None

    def get_config(self) -> dict[str, Any]:
        """JSON-able configuration: ``{"id": codec_id, **constructor arguments}``, each
        constructor parameter read from the attribute of the same name."""
        params = {}
        for name in constructor_parameters(type(self)) or ():
            if not hasattr(self, name):
                raise TypeError(
                    f"{type(self).__name__}.get_config: constructor parameter {name!r} is "
                    f"not stored as attribute self.{name}; store every constructor "
                    f"argument under its own name, or override get_config()")
            params[name] = getattr(self, name)
        return {"id": self.codec_id, **params}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Codec":
        """Build a codec from :meth:`get_config` output; unknown keys raise a
        ValueError naming the allowed ones."""
        config = dict(config)
        codec_id = config.pop("id", cls.codec_id)
        if codec_id != cls.codec_id:
            raise ValueError(f"config id {codec_id!r} does not match codec "
                             f"{cls.__name__} (id {cls.codec_id!r})")
        return cls._from_parameters(config, codec_id)

    @classmethod
    def _from_parameters(cls, params: dict[str, Any], codec_id: str) -> "Codec":
        """``cls(**params)`` once every key is known to be a constructor parameter."""
        allowed = constructor_parameters(cls)
        unknown = sorted(set(params) - set(allowed)) if allowed is not None else []
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(map(repr, unknown))} for "
                             f"codec {codec_id!r}; allowed: "
                             f"{', '.join(allowed) or 'none (it takes no parameters)'}")
        return cls(**params)

    # -- the shared frame, for codecs that use it -----------------------------------
    def pack_message(self, d: int, *parts: bytes) -> bytes:
        """``header + parts``: a self-describing message of this codec for ``d``
        coordinates whose payload is the concatenation of ``parts``."""
        payload = b"".join(parts)
        return Header(self.codec_id, d, len(payload)).pack() + payload

    def read_message(self, buf: Any, max_dim: int | None = None
                     ) -> tuple[int, np.ndarray]:
        """``(d, payload)`` of a message of this codec (payload as a uint8 array).

        Raises CodecError for a malformed frame, a message of another codec, or one
        announcing more than ``max_dim`` coordinates.
        """
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
        return header.d, data[HEADER_SIZE:]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Codec) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(json.dumps(self.get_config(), sort_keys=True, default=repr))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "id")
        return f"{type(self).__name__}({args})"


def constructor_parameters(cls: type) -> list[str] | None:
    """Names of the named parameters of ``cls(...)``, in order; None if it also takes
    ``**kwargs`` (then any key may be valid)."""
    if cls.__init__ is object.__init__:
        return []
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]   # no self
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
