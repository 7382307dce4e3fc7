"""The paper's experiments, each a function returning an :class:`ExperimentResult`
(an Arrow table of measured numbers, the trajectories, a matplotlib figure and the
claim stated with the numbers).

==================  ==============================================================
experiment          claim tested
==================  ==============================================================
convergence         mini-batch SGD from the moment init converges geometrically
sample_complexity   recovery has a phase transition at a constant n/d
quantization        QSGD keeps the geometric rate, in master and all-to-all modes
communication       QSGD reaches a given error with far fewer bytes moved
noise               with label noise, convergence to a floor proportional to sigma
compressors         which compressor (with or without error feedback) reaches a given
                    error with the fewest bytes, and what entropy coding saves
==================  ==============================================================

:func:`reproduce` runs them all for a profile (``smoke``, ``quick``, ``full``) and
writes Parquet and PNG files; ``ray-relu reproduce`` is its command line.
"""

from .communication import communication
from .compressors import compressors
from .convergence import convergence
from .noise import noise
from .profiles import PROFILES
from .quantization import quantization
from .reproduce import EXPERIMENTS, reproduce
from .result import ExperimentResult, read_metadata
from .sample_complexity import sample_complexity

__all__ = ["convergence", "sample_complexity", "quantization", "communication", "noise",
           "compressors",
           "reproduce", "EXPERIMENTS", "PROFILES", "ExperimentResult", "read_metadata"]
