"""Run every benchmark: ``python -m benchmarks [--quick] [--out DIR] [NAME ...]``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from pathlib import Path


def available() -> list[str]:
    """Benchmark modules in this package (every public module with a ``main(argv)``)."""
    here = Path(__file__).resolve().parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {available()})")
    parser.add_argument("--quick", action="store_true", help="small profile")
    parser.add_argument("--out", type=Path, default=None, help="directory for the JSON output")
    args = parser.parse_args(argv)
    names = args.names or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; available: {available()}")
    failed = []
    for name in names:
        start = time.perf_counter()
        print(f"\n######## benchmarks.{name} ########", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        sub_argv = (["--quick"] if args.quick else []) + (["--out", str(args.out)] if args.out else [])
        try:
            module.main(sub_argv)
        except Exception as exc:  # keep going: one failing benchmark should not hide the rest
            print(f"benchmarks.{name} FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed.append(name)
        print(f"(benchmarks.{name}: {time.perf_counter() - start:.1f} s)", flush=True)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
