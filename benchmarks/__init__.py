"""Benchmarks: each module measures our figure and its reference side by side in one run.

Run one with ``python -m benchmarks.NAME [--quick]`` or all with ``python -m benchmarks --quick``
(``make bench``). Each prints a table with the ratios and writes JSON to ``benchmarks/results/``.
"""
