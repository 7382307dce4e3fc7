"""Gradient codecs: full precision, fp16 and QSGD, behind a numcodecs-style interface.

Numpy, with compiled (numba) kernels for QSGD; knows nothing of the model. ``encode``
gives self-describing bytes (the number of bytes on the wire is ``len`` of them),
``decode`` gives a float64 vector::

    codec = get_codec("qsgd", levels=16, seed=0)
    msg = codec.encode(grad)
    approx = codec.decode(msg)
"""

from .base import Codec, CodecError
from .feedback import ErrorFeedback
from .fp16 import FP16
from .fullprec import FullPrecision
from .natural import Natural
from .powersgd import PowerSGD
from .qsgd import QSGD
from .registry import available_codecs, get_codec, register_codec
from .sign import Sign
from .sparse import RandK, TopK
from .terngrad import TernGrad

register_codec(FullPrecision, "fp64")
register_codec(FullPrecision, "fp32")
register_codec(FP16)
register_codec(QSGD)
for _compressor in (TopK, RandK, Sign, TernGrad, Natural, PowerSGD, ErrorFeedback):
    register_codec(_compressor)

__all__ = ["Codec", "CodecError", "get_codec", "register_codec", "available_codecs",
           "FullPrecision", "FP16", "QSGD", "TopK", "RandK", "Sign", "TernGrad",
           "Natural", "PowerSGD", "ErrorFeedback"]
