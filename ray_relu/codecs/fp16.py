"""IEEE half-precision codec ("fp16")."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._raw import RawFloatCodec

__all__ = ["FP16"]


class FP16(RawFloatCodec):
    """IEEE 754 binary16, round to nearest even (numpy's cast), 16 bits per coordinate.

    Overflow: a value that rounds beyond the half range (``|v| >= 65520``) raises
    ValueError rather than silently becoming inf. Scale gradients first if needed.
    """

    codec_id = "fp16"
    _dtype = np.dtype(np.float16)

    def __init__(self) -> None:
        pass

    def _params(self) -> dict[str, Any]:
        return {}

    def variance_bound(self, d: int) -> float:
        """``2**-22``: round to nearest has relative error <= u = 2**-11 per coordinate.

        So ``||Q(v) - v||^2 <= u^2 ||v||^2`` deterministically, valid when every nonzero
        ``|v_i|`` is in the normal half range (``>= 2**-14``, about 6.1e-5). Smaller
        values are subnormal and carry an absolute error up to ``2**-25`` each instead.
        """
        return 2.0 ** -22
