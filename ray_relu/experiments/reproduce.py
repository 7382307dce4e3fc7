"""Run the six experiments of a profile and write their tables, figures and claims.

Output directory layout::

    <name>.parquet          one row per configuration (the measured numbers)
    <name>_curves.parquet   the trajectories (long format)
    <name>.png              the experiment's figure
    overview.png            the headline panel of every experiment
    summary.md / .json      each claim with its numbers, verdict and run time
"""

from __future__ import annotations

import json
import time
from importlib import import_module
from pathlib import Path
from typing import Callable, Sequence

from .._validation import check_int
from . import plotting
from .profiles import profile as profile_kwargs
from .result import ExperimentResult

# The modules, in the order the experiments run (``import_module``: the package
# namespace binds these names to the experiment functions, not the modules).
_MODULES = tuple(import_module(f"{__package__}.{name}") for name in (
    "convergence", "sample_complexity", "quantization", "communication", "noise",
    "compressors"))
EXPERIMENTS: dict[str, Callable[..., ExperimentResult]] = {
    m.NAME: getattr(m, m.NAME) for m in _MODULES}
HEADLINES = {m.NAME: m.PANELS[0] for m in _MODULES}


def _select(only: Sequence[str] | None) -> list[str]:
    if only is None:
        return list(EXPERIMENTS)
    names = list(dict.fromkeys(only))
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown or not names:
        raise ValueError(f"unknown experiment(s) {unknown or names}; choose from "
                         f"{', '.join(EXPERIMENTS)}")
    return [n for n in EXPERIMENTS if n in names]


def reproduce(profile: str = "quick", out: str | Path = "results", *,
              only: Sequence[str] | None = None, address: str | None = None,
              seed: int = 0, log: Callable[[str], None] = print) -> dict[str, ExperimentResult]:
    """Run the experiments of ``profile`` (all, or those named in ``only``) into ``out``.

    Ray is started (``address=None``: locally; ``"auto"``: join a cluster) unless it
    is already running, and left running. ``log`` receives one line per step. Returns
    the results by name; the files are described in the module docstring.
    """
    kwargs = profile_kwargs(profile)
    names = _select(only)
    seed = check_int("seed", seed, minimum=0)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from ..runtime import ensure_ray
    ensure_ray(address, log_to_driver=False)
    results, timings = {}, {}
    for i, name in enumerate(names, 1):
        log(f"[{i}/{len(names)}] {name} ({profile}) ...")
        begin = time.perf_counter()
        result = EXPERIMENTS[name](**kwargs[name], seed=seed)
        timings[name] = time.perf_counter() - begin
        result.save(out)
        results[name] = result
        verdict = "holds" if result.holds else "DOES NOT HOLD"
        log(f"    {timings[name]:.1f} s, claim {verdict}: {result.claim}")
    fig = plotting.overview(list(results.values()), HEADLINES)
    fig.savefig(out / "overview.png", dpi=110, bbox_inches="tight")
    _write_summary(out, profile, seed, results, timings)
    _close([fig] + [r.figure for r in results.values()])
    log(f"wrote {len(results)} experiments to {out}/")
    return results


def _write_summary(out: Path, profile: str, seed: int, results: dict,
                   timings: dict) -> None:
    entries = [{**r.metadata(), "seconds": round(timings[n], 2)} for n, r in results.items()]
    (out / "summary.json").write_text(json.dumps(
        {"profile": profile, "seed": seed, "experiments": entries}, indent=2, default=str))
    lines = [f"# ray_relu reproduction ({profile} profile, seed {seed})", ""]
    for e in entries:
        lines += [f"## {e['name']} ({'holds' if e['holds'] else 'does NOT hold'}, "
                  f"{e['seconds']:.0f} s)", "", e["claim"], "", f"![{e['name']}]({e['name']}.png)",
                  ""]
    (out / "summary.md").write_text("\n".join(lines))


def _close(figures) -> None:
    import matplotlib.pyplot as plt
    for fig in figures:
        plt.close(fig)
