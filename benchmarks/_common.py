"""Shared helpers for the benchmark scripts: repeated timing, tables, JSON output, CLI."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ray_relu.tables import text_table

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def median_seconds(fn: Callable[[], Any], *, repeats: int = 7, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs (after ``warmup`` untimed runs)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(fns: dict[str, Callable[[], Any]], *, repeats: int = 7,
                        warmup: int = 1) -> dict[str, float]:
    """Median times of several candidates measured round-robin, so that machine noise
    (the other core busy, frequency changes) hits every candidate alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in samples.items()}


def machine() -> dict[str, Any]:
    """A short description of the machine the numbers were measured on."""
    import os

    import numpy as np

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }
    try:
        import ray

        info["ray"] = ray.__version__
    except ImportError:  # pragma: no cover - ray is a dependency
        pass
    return info


def print_table(rows: Sequence[dict[str, Any]], title: str = "") -> None:
    """Print ``== title ==`` and rows (dicts with the same keys) as a plain-text table."""
    if title:
        print(f"\n== {title} ==")
    print(text_table(rows))


def write_json(name: str, payload: dict[str, Any], out_dir: Path | None = None) -> Path:
    """Write ``payload`` (plus the machine description) to ``<out_dir>/<name>.json``."""
    out = Path(out_dir) if out_dir is not None else RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    payload = {"benchmark": name, "machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=2, default=float))
    print(f"wrote {path}")
    return path


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The common command line: ``--quick`` (small profile) and ``--out DIR``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small profile (make bench)")
    parser.add_argument("--out", type=Path, default=None, help="directory for the JSON output")
    return parser.parse_args(argv)


def cluster_driver_parser(description: str) -> argparse.ArgumentParser:
    """The arguments every driver submitted to the emulated cluster takes: the problem
    (``--d``, ``--n``), ``--workers``, ``--batch-per-worker`` and the Ray ``--address``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--d", type=int, required=True)
    parser.add_argument("--n", type=int, default=None, help="default 8*d")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--batch-per-worker", type=int, default=64)
    parser.add_argument("--address", default="auto")
    return parser
