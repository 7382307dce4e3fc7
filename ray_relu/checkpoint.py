"""Checkpoints: everything needed to continue a fit exactly where it stopped.

A checkpoint taken after round ``t`` holds ``w_t``, the history rows ``0..t``, what
round ``t + 1`` needs in master mode (``w_{t+1}``, and how many bytes the master would
have shipped for it, so that the resumed history counts the same traffic as an
uninterrupted run; all-to-all workers replay round ``t`` from ``w_t``), and the run's
fingerprint. Files from earlier versions also hold the K messages of round ``t``.
There is no generator state to save: every random draw is keyed by (seed, t, k), so
the seed and ``t`` are the RNG state.

Files are NumPy ``.npz`` archives at a local path or a URI (``file://``, ``s3://``,
whatever ``pyarrow.fs`` resolves; see :mod:`ray_relu.storage`), so a checkpoint can
outlive the head node. Local files are written atomically (temporary file, fsync,
rename), so a crash mid-write leaves the previous checkpoint intact; object stores
publish an object only when its single upload completes.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from . import storage

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or belongs to another run."""


@dataclass
class Checkpoint:
    iteration: int
    w: np.ndarray
    history: pa.Table
    fingerprint: dict
    converged: bool
    next_w: np.ndarray | None = None        # master: w_{t+1}
    next_bytes: int = 0                     # master: the downlink bytes of round t+1
    messages: list[bytes] | None = None     # older all-to-all files: messages of round t
    replica_divergence: float = 0.0
    restarts: int = 0
    residuals: np.ndarray | None = None          # error feedback: each worker's memory
    downlink_residual: np.ndarray | None = None  # error feedback: the master's memory


def save(path: str | os.PathLike, ckpt: Checkpoint) -> None:
    """Write ``ckpt`` to ``path`` (a local path or a URI), atomically where possible."""
    fs, where = storage.resolve_location(path)
    meta = {"format": FORMAT_VERSION, "iteration": ckpt.iteration,
            "fingerprint": ckpt.fingerprint, "converged": ckpt.converged,
            "replica_divergence": ckpt.replica_divergence, "restarts": ckpt.restarts,
            "next_bytes": ckpt.next_bytes}
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, ckpt.history.schema) as writer:
        writer.write_table(ckpt.history)
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
              "w": ckpt.w, "history": np.frombuffer(sink.getvalue(), dtype=np.uint8)}
    for name in ("next_w", "residuals", "downlink_residual"):
        if getattr(ckpt, name) is not None:
            arrays[name] = getattr(ckpt, name)
    if ckpt.messages is not None:
        arrays["message_sizes"] = np.array([len(m) for m in ckpt.messages], dtype=np.int64)
        arrays["messages"] = np.frombuffer(b"".join(ckpt.messages), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    storage.write_bytes(fs, where, buf.getbuffer())


def load(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint; any problem is a :class:`CheckpointError` naming the file."""
    fs, where = storage.resolve_location(path)
    try:
        blob = storage.read_bytes(fs, where)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except (OSError, pa.ArrowException) as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc}") from None
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            if meta.get("format") != FORMAT_VERSION:
                raise CheckpointError(f"checkpoint {path} has format {meta.get('format')}, "
                                      f"this version reads format {FORMAT_VERSION}")
            history = pa.ipc.open_stream(pa.py_buffer(bytes(z["history"]))).read_all()
            messages = None
            if "messages" in z:
                blob, sizes = bytes(z["messages"]), z["message_sizes"]
                offsets = np.concatenate([[0], np.cumsum(sizes)])
                if offsets[-1] != len(blob):
                    raise CheckpointError(f"checkpoint {path}: message sizes do not add up")
                messages = [blob[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
            return Checkpoint(iteration=int(meta["iteration"]), w=np.array(z["w"]),
                              history=history, fingerprint=meta["fingerprint"],
                              converged=bool(meta["converged"]),
                              next_w=np.array(z["next_w"]) if "next_w" in z else None,
                              residuals=np.array(z["residuals"]) if "residuals" in z
                              else None,
                              downlink_residual=np.array(z["downlink_residual"])
                              if "downlink_residual" in z else None,
                              next_bytes=int(meta.get("next_bytes", 0)),
                              messages=messages,
                              replica_divergence=float(meta["replica_divergence"]),
                              restarts=int(meta.get("restarts", 0)))
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile,
            pa.ArrowException, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a ray_relu "
                              f"checkpoint: {type(exc).__name__}: {exc}") from None


def check_matches(ckpt: Checkpoint, fingerprint: dict, path: str | os.PathLike) -> None:
    """Raise unless the checkpoint was written by a run with this fingerprint."""
    saved = json.loads(json.dumps(ckpt.fingerprint))
    wanted = json.loads(json.dumps(fingerprint))
    diffs = [f"{key}: checkpoint has {saved.get(key)!r}, this run has {wanted.get(key)!r}"
             for key in sorted(set(saved) | set(wanted)) if saved.get(key) != wanted.get(key)]
    if diffs:
        raise CheckpointError(f"checkpoint {path} belongs to a different run; "
                              + "; ".join(diffs))
