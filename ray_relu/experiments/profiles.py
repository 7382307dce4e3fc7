"""Sizes of the experiments per profile: ``smoke`` (tests, notebooks), ``quick`` (a
2-core machine, a few minutes) and ``full`` (a cluster, ``--address auto``).

Each profile maps an experiment name to the keyword arguments of its function; what is
not listed takes the function's default. The seed is added by
:func:`~ray_relu.experiments.reproduce.reproduce`.
"""

from __future__ import annotations

PROFILES: dict[str, dict[str, dict]] = {
    "smoke": {
        "convergence": {"d": 50, "batch_sizes": (12, None), "tol": 1e-8,
                        "engine": "reference"},
        "sample_complexity": {"dims": (20, 40), "ratios": (0.5, 1.0, 2.0, 3.0, 4.0, 8.0),
                              "trials": 3, "iterations": 1500},
        "quantization": {"d": 100, "workers": 2, "codecs": ("fp32", "qsgd:2"),
                         "iterations": 600},
        "communication": {"d": 100, "workers": (2,), "codecs": ("fp32", "qsgd:4"),
                          "iterations": 600},
        "noise": {"d": 50, "sigmas": (0.0, 1e-3, 1e-2), "iterations": 300,
                  "engine": "reference"},
        "compressors": {"d": 30, "workers": 2,
                        "codecs": ("fp32", "qsgd s=16 elias", "qsgd s=16 dense", "sign"),
                        "iterations": 800},
    },
    "quick": {
        "convergence": {"d": 200},
        "sample_complexity": {"dims": (25, 50, 100, 200),
                              "ratios": (0.5, 1.0, 1.5, 2.0, 2.25, 2.5, 2.75, 3.0, 4.0, 8.0),
                              "trials": 8, "iterations": 2000, "parallel": True},
        "quantization": {"d": 400, "workers": 4, "iterations": 1000, "tol": 1e-7},
        "communication": {"d": 400, "codecs": ("fp32", "qsgd:4")},
        "noise": {"d": 100, "iterations": 400},
        "compressors": {"d": 100},
    },
    "full": {
        "convergence": {"d": 1000, "workers": 4},
        "sample_complexity": {"dims": (50, 100, 200, 400, 800), "trials": 50,
                              "iterations": 6000, "parallel": True},
        "quantization": {"d": 2000, "workers": 8, "iterations": 4000},
        "communication": {"d": 2000, "codecs": ("fp32", "fp16", "qsgd:1", "qsgd:4",
                                                "qsgd:sqrt"), "iterations": 4000},
        "noise": {"d": 400, "sigmas": (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 0.3),
                  "iterations": 1500},
        "compressors": {"d": 1000, "workers": 8, "iterations": 6000},
    },
}


def profile(name: str) -> dict[str, dict]:
    """The keyword arguments of every experiment in profile ``name`` (a copy)."""
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(map(repr, PROFILES))}; "
                         f"got {name!r}")
    return {k: dict(v) for k, v in PROFILES[name].items()}
