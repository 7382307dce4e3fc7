"""Full-precision codecs: float64 ("fp64") and float32 ("fp32") raw arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import check_choice
from ._raw import RawFloatCodec

__all__ = ["FullPrecision"]

_IDS = {"float64": "fp64", "float32": "fp32"}


class FullPrecision(RawFloatCodec):
    """Exact codec for its dtype: ``decode(encode(v)) == v.astype(dtype)``.

    Parameters
    ----------
    dtype : {"float32", "float64"}
        Wire precision; the codec id is ``"fp32"`` or ``"fp64"`` accordingly.
        fp32 raises ValueError for values beyond the float32 range.
    """

    codec_id = "fp32"      # class default; each instance sets its own from dtype

    def __init__(self, dtype: str = "float32") -> None:
        if not isinstance(dtype, str):             # accept np.float32, np.dtype("f8"), ...
            try:
                dtype = np.dtype(dtype).name
            except TypeError:
                pass                               # check_choice reports it
        self.dtype = check_choice("dtype", dtype, tuple(_IDS))
        self._dtype = np.dtype(self.dtype)
        self.codec_id = _IDS[self.dtype]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "FullPrecision":
        """Build from ``{"id": "fp32"|"fp64"[, "dtype": ...]}``; id and dtype must agree."""
        config = dict(config)
        codec_id = config.pop("id", None)
        by_id = {v: k for k, v in _IDS.items()}
        if codec_id is not None:
            check_choice("id", codec_id, tuple(by_id))
            dtype = config.setdefault("dtype", by_id[codec_id])
            if dtype != by_id[codec_id]:
                raise ValueError(f"config id {codec_id!r} means dtype "
                                 f"{by_id[codec_id]!r}, but dtype={dtype!r} was given")
        return cls._from_parameters(config, codec_id or cls.codec_id)

    def variance_bound(self, d: int) -> float:
        """0.0: the round trip is exact for vectors already in this dtype.

        (float64 input through fp32 has relative rounding error <= 2**-24 per
        coordinate, i.e. ``q = 2**-48``, for normal float32 values.)
        """
        return 0.0
