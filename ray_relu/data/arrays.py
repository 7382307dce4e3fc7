"""In-memory data: numpy arrays ``(X, y)``.

The arrays stay in the driver. On Ray each actor receives only its own rows: when the
K actors start, each shard is put in the object store once (:meth:`ArrayData.for_workers`)
and an actor fetches just that object, zero-copy when it runs on the driver's node. So
a data set crosses the network at most once in all, and no actor holds more than its
shard. Without Ray (:func:`ray_relu.reference.sgd`) shards are views of the arrays.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from ..shards import shard_bounds

# Rows are digested this many values at a time (float32 rows widened one block at once).
_DIGEST_VALUES = 1 << 20


def feature_dtype(dtype: Any) -> np.dtype:
    """The dtype shards keep floating features in: float32 for float16 and float32
    data, float64 otherwise. Widening float32 to float64 is exact, so keeping it
    changes no bit of a fit, and the rows take half the memory."""
    return np.dtype(np.float32 if np.dtype(dtype).itemsize <= 4 else np.float64)


def check_arrays(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` as arrays of shapes ``(n, d)`` (float32 or float64:
    :func:`feature_dtype`) and ``(n,)`` (float64), all finite; a ValueError naming
    what is wrong and what is allowed."""
    X, y = _floats("X", X, keep_single=True), _floats("y", y)
    if X.ndim != 2:
        hint = "; one feature: X.reshape(-1, 1)" if X.ndim == 1 else ""
        raise ValueError(f"X must be 2-D (rows x features), got shape {X.shape}{hint}")
    if y.ndim != 1:
        hint = "; use y.ravel()" if y.ndim == 2 and 1 in y.shape else ""
        raise ValueError(f"y must be 1-D (one label per row), got shape {y.shape}{hint}")
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)} labels; they must match")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"X must have at least one row and one column, got shape "
                         f"{X.shape}")
    for name, values in (("X", X), ("y", y)):
        bad = ~np.isfinite(values)
        if bad.any():
            at = np.argwhere(bad)[0]
            raise ValueError(f"{name} has NaN or inf at index {tuple(int(i) for i in at)}; "
                             f"every value must be finite")
    return X, y


def check_w_star(w_star: Any) -> np.ndarray | None:
    """A given ``w*`` as a finite float64 vector (None stays None)."""
    if w_star is None:
        return None
    w = _floats("w_star", w_star)
    if w.ndim != 1 or not np.all(np.isfinite(w)):
        raise ValueError(f"w_star must be a finite 1-D vector, got shape {w.shape}")
    return w


def _floats(name: str, value: Any, keep_single: bool = False) -> np.ndarray:
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name} must hold floats (float16, float32 or float64), got "
                         f"dtype {array.dtype}; convert with np.asarray({name}, dtype=float)")
    dtype = feature_dtype(array.dtype) if keep_single else np.float64
    return np.ascontiguousarray(array, dtype=dtype)


class ArrayData:
    """Numpy arrays as a data source: ``ArrayData(X, y, w_star=None)``.

    Parameters
    ----------
    X : array of shape ``(n, d)``, floating. float32 stays float32 (half the memory of
        float64, and the very same fit: rows are widened as they are read), float16
        becomes float32, anything else float64. Not copied if it already is
        C-contiguous float32 or float64, so do not change it during a fit.
    y : array of shape ``(n,)``, floating.
    w_star : the true parameters if known (a vector), so a fit reports ``rel_error``
        and stops on it; None (default): the fit stops on the relative change of ``w``.

    Shard ``k`` of ``K`` is rows ``shard_bounds(n, k, K)``, the same split as a planted
    problem's, so the same rows give the same fit whatever their container.
    """

    def __init__(self, X: Any, y: Any, w_star: Any = None) -> None:
        self.X, self.y = check_arrays(X, y)
        self.n, self.d = self.X.shape
        self.feature_dtype = self.X.dtype
        self.w_star = check_w_star(w_star)
        self._digest: str | None = None
        self._shipped: tuple[int, list] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n}, d={self.d})"

    def spec(self) -> dict:
        """``kind``, ``n``, ``d`` and a digest of the values (a checkpoint resumes only
        on the same numbers, whatever container holds them: float32 rows are digested
        as the float64 numbers they are)."""
        if self._digest is None:
            h = hashlib.blake2b(digest_size=16)
            step = max(1, _DIGEST_VALUES // self.d)
            for start in range(0, self.n, step):
                h.update(memoryview(np.ascontiguousarray(
                    self.X[start:start + step], dtype=np.float64)).cast("B"))
            h.update(memoryview(self.y).cast("B"))
            self._digest = h.hexdigest()
        return {"kind": "arrays", "n": self.n, "d": self.d, "digest": self._digest}

    def shard(self, k: int, K: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``shard_bounds(n, k, K)`` (views of the arrays)."""
        start, stop = shard_bounds(self.n, k, K)
        return self.X[start:stop], self.y[start:stop]

    def for_workers(self, K: int) -> list["ShippedShard"]:
        """What each of ``K`` actors receives: a reference to its own rows, put in the
        object store here once per K (kept while this source lives, so that a
        restarted actor fetches them again)."""
        import ray
        if self._shipped is None or self._shipped[0] != K:
            self._shipped = None            # let the previous K's objects go first
            refs = []
            for k in range(K):
                X, y = self.shard(k, K)
                refs.append(ShippedShard(ray.put(X), ray.put(y), k, K, self.w_star))
            self._shipped = (K, refs)
        return self._shipped[1]


class ShippedShard:
    """One actor's rows of an :class:`ArrayData`, as object references."""

    def __init__(self, X_ref: Any, y_ref: Any, k: int, K: int,
                 w_star: np.ndarray | None) -> None:
        self.refs, self.k, self.K, self.w_star = (X_ref, y_ref), k, K, w_star

    def shard(self, k: int, K: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows (read-only arrays, zero-copy on the node that put them)."""
        import ray
        if (k, K) != (self.k, self.K):
            raise ValueError(f"this is shard {self.k} of {self.K}, not {k} of {K}")
        X, y = ray.get(list(self.refs))
        return X, y
