"""Watching a fit while it runs: a progress display and Ray metrics.

- :func:`progress_reporter`: a tqdm bar in a terminal, a widget in Jupyter, and in
  logs (a ``ray job`` driver, a pipe, a file) one plain line every
  ``LINE_EVERY_S`` seconds, because a bar redrawn with carriage returns turns into
  one unreadable line in ``ray job logs``.
- :class:`FitMetrics`: per-round metrics through ``ray.util.metrics``, so a cluster's
  dashboard and Prometheus show a fit's progress. Ray exports them with its ``ray_``
  prefix: ``ray_ray_relu_round``, ``ray_ray_relu_rel_error``, ``ray_ray_relu_loss``,
  ``ray_ray_relu_round_seconds`` (gauges) and ``ray_ray_relu_bytes_total`` (a counter
  with tag ``direction`` = ``up``, ``down`` or ``peer``), each tagged with ``fit``
  (the run's name) and ``mode``.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from typing import Any, Protocol

LINE_EVERY_S = 10.0
# Metrics are flushed to Ray at most this often: recording costs microseconds per
# call, which a 1 ms round would notice if it were paid every round.
METRICS_EVERY_S = 1.0
DIRECTIONS = ("up", "down", "peer")


class Progress(Protocol):
    def update(self, t: int, value: float) -> None: ...

    def close(self) -> None: ...


def progress_reporter(enabled: bool, total: int, initial: int, rule: str) -> Progress | None:
    """The display for this process: None when ``enabled`` is False."""
    if not enabled:
        return None
    in_notebook = _in_jupyter_kernel()
    if sys.stderr.isatty() or in_notebook:
        return _Bar(total, initial, rule, in_notebook)
    return _Lines(total, initial, rule)


def _in_jupyter_kernel() -> bool:
    """Whether this process is a Jupyter kernel running user code (an imported
    ``ipykernel`` alone, as in a test process that ran notebooks, is not one)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and hasattr(shell, "kernel")


class _Bar:
    def __init__(self, total: int, initial: int, rule: str, in_notebook: bool) -> None:
        from tqdm import tqdm
        if in_notebook:
            try:  # the widget needs ipywidgets; without it the text bar works in a notebook too
                import ipywidgets  # noqa: F401
                from tqdm.notebook import tqdm
            except ImportError:
                pass
        self.rule = rule
        self.bar = tqdm(total=total, initial=initial, desc="ray_relu fit", unit="it",
                        leave=False, file=sys.stderr)

    def update(self, t: int, value: float) -> None:
        self.bar.update(1)
        # refresh=False: the bar redraws on its own clock; forcing a redraw every round
        # would cost ~50 us, some 5 % of a small round.
        self.bar.set_postfix({self.rule: f"{value:.3g}"}, refresh=False)

    def close(self) -> None:
        self.bar.close()


class _Lines:
    """``ray_relu fit: round 1200/5000, rel_error 3.2e-05, 480 rounds/s`` now and then."""

    def __init__(self, total: int, initial: int, rule: str) -> None:
        self.total, self.rule = total, rule
        self.begin = self.last = time.monotonic()
        self.first = initial
        self.t, self.value = initial, math.nan

    def update(self, t: int, value: float) -> None:
        self.t, self.value = t, value
        now = time.monotonic()
        if now - self.last >= LINE_EVERY_S:
            self.last = now
            self._print(now)

    def close(self) -> None:
        self._print(time.monotonic(), done=True)

    def _print(self, now: float, done: bool = False) -> None:
        rate = (self.t - self.first) / max(now - self.begin, 1e-9)
        print(f"ray_relu fit: {'finished at ' if done else ''}round {self.t}/{self.total}, "
              f"{self.rule} {self.value:.3g}, {rate:.0f} rounds/s", file=sys.stderr,
              flush=True)


class FitMetrics:
    """Per-round metrics of one fit, exported through ``ray.util.metrics``.

    Bytes accumulate locally and everything is handed to Ray at most every
    ``METRICS_EVERY_S`` seconds and at :meth:`close`. Where Ray metrics are not
    available (a Ray Client driver, say) it warns once and records nothing.
    """

    def __init__(self, name: str, mode: str) -> None:
        self.tags = {"fit": name, "mode": mode}
        self.pending = dict.fromkeys(DIRECTIONS, 0)
        self.latest: Any = None
        self.last_flush = 0.0
        try:
            from ray.util import metrics
            keys = ("fit", "mode")
            self.gauges = {
                "iteration": metrics.Gauge("ray_relu_round", "last completed round", keys),
                "rel_error": metrics.Gauge("ray_relu_rel_error",
                                           "||w - w*|| / ||w*|| at that round", keys),
                "loss": metrics.Gauge("ray_relu_loss", "mean loss at that round", keys),
                "wall_s": metrics.Gauge("ray_relu_round_seconds",
                                        "wall-clock seconds of that round", keys),
            }
            self.bytes = metrics.Counter("ray_relu_bytes", "bytes on the wire by direction",
                                         (*keys, "direction"))
        except Exception as exc:   # metrics are a convenience: never fail a fit for them
            warnings.warn(f"ray_relu: Ray metrics unavailable, not exported ({exc})",
                          stacklevel=2)
            self.gauges = None

    def record(self, record: Any) -> None:
        """Account one round's record (a :class:`~ray_relu.coordinator.RoundRecord`)."""
        if self.gauges is None:
            return
        for direction in DIRECTIONS:
            self.pending[direction] += getattr(record, f"bytes_{direction}")
        self.latest = record
        now = time.monotonic()
        if now - self.last_flush >= METRICS_EVERY_S:
            self.last_flush = now
            self._flush()

    def close(self) -> None:
        """Hand what is pending to Ray."""
        if self.gauges is not None and self.latest is not None:
            self._flush()

    def _flush(self) -> None:
        for key, gauge in self.gauges.items():
            value = float(getattr(self.latest, key))
            if math.isfinite(value):
                gauge.set(value, tags=self.tags)
        for direction, count in self.pending.items():
            if count:
                self.bytes.inc(count, tags={**self.tags, "direction": direction})
        self.pending = dict.fromkeys(DIRECTIONS, 0)
