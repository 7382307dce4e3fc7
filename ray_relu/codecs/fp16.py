"""IEEE half-precision codec ("fp16"), with an optional power-of-two message scale."""

from __future__ import annotations

import math
import numpy as np

from .._validation import check_choice
from ._raw import RawFloatCodec, _overflow_limit

__all__ = ["FP16"]

SCALES = ("auto", "none")
# ``auto`` brings the largest |v| into [2**14, 2**15): the top of the half range,
# with room for round-up, so values down to max|v| * 2**-29 stay normal halves.
_TOP_EXPONENT = 15
_MAX_EXPONENT = 1100        # beyond any float64's exponent: a message past it is corrupt


class FP16(RawFloatCodec):
    """IEEE 754 binary16, round to nearest even, 16 bits per coordinate.

    Parameters
    ----------
    scale : ``"auto"`` (default) divides the vector by a power of two ``2**e`` chosen
        per message so that its largest magnitude sits at the top of the half range,
        and writes ``e`` in the payload's
        2-byte exponent block. A power of two only shifts exponents, so each
        coordinate is still rounded to 11 significant bits, but gradients that shrink
        geometrically near the optimum (1e-9 and below) never underflow to zero and
        large ones never overflow. ``"none"`` is the plain cast (numpy's
        ``astype(float16)``): values below 2**-24 flush to zero and magnitudes that
        round beyond 65504 raise ValueError.
    """

    codec_id = "fp16"
    _dtype = np.dtype(np.float16)
    _scaled = True

    def __init__(self, scale: str = "auto") -> None:
        self.scale = check_choice("scale", scale, SCALES)

    def variance_bound(self, d: int) -> float:
        """``||Q(v) - v||^2 <= q ||v||^2`` (deterministic).

        Round to nearest has relative error ``<= 2**-11`` for normal halves: ``2**-22``.
        With ``scale="auto"`` a coordinate below the normal range (``< max|v| 2**-29``)
        has absolute error ``<= max|v| 2**-40`` instead, adding at most ``d 2**-80``.
        With ``"none"`` the bound holds for vectors whose nonzeros are normal halves
        (``|v_i| >= 2**-14``).
        """
        return 2.0 ** -22 + (d * 2.0 ** -80 if self.scale == "auto" else 0.0)

    def _exponent_for(self, arr: np.ndarray) -> int:
        if self.scale == "none" or arr.size == 0:
            return 0
        peak = float(np.max(np.abs(arr)))
        if peak == 0.0:
            return 0
        return math.frexp(peak)[1] - _TOP_EXPONENT

    def _input_limit(self) -> float:
        if self.scale == "none":
            return _overflow_limit(self._dtype)
        # The scaled peak may round up to 2**15; decoded it must stay a finite float64.
        return float(np.finfo(np.float64).max) * (1 - 2.0 ** -11)

    def _exponent_ok(self, exponent: int) -> bool:
        return exponent == 0 if self.scale == "none" else abs(exponent) <= _MAX_EXPONENT

    def _allowed_exponents(self) -> str:
        return "0 (scale='none')" if self.scale == "none" else \
            f"-{_MAX_EXPONENT}..{_MAX_EXPONENT}"
