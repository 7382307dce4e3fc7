"""Where the bytes of one round physically go, and the round time the links allow.

The emulated cluster has a head (the driver) and one worker per worker node; every
node's link is shaped in both directions (egress of both ends of its veth), so a link
is two independent pipes of ``rate`` bits/s and a packet between two nodes crosses two
shaped hops.

Ray moves a task's return value inline in the reply to its owner (the driver) when it
is at most ``max_direct_call_object_size`` (100 KiB by default) and resolves inlined
arguments into the task it sends; larger objects stay in the producing node's object
store and are pulled from there by whoever needs them. So per round, with K workers,
an uplink message of ``u`` bytes, a downlink message of ``v`` bytes:

- master with a downlink codec (as both cluster benchmarks run it): the head receives
  ``K*u`` and sends ``K*v`` (one ``ray.put``, but each worker node pulls its own copy);
- all-to-all, ``u <= inline``: every message goes to the driver and from there to the
  K - 1 other workers (each worker keeps its own): the head receives ``K*u`` and sends
  ``K*(K-1)*u``;
- all-to-all, ``u > inline``: worker to worker; each worker node sends and receives
  ``(K-1)*u``.

A synchronous round (master with a downlink codec) cannot overlap its two directions
through the head: the replies (uplink) must all arrive before the next calls
(downlink) can leave, so the wire time is ``(head in + head out) * 8 / rate``.
All-to-all submits rounds ahead: the head forwards one worker's message while it
receives the next, so its wire time is the busier direction's, ``max(head in, head
out) * 8 / rate``; worker to worker, every node sends and receives at once and the
wire time is ``(K-1)*u * 8 / rate``. Each leg first spends the tbf burst
(``BURST_BYTES``) at line rate.
``floor = wire + latency + compute + encode/decode``, with ``latency`` one round trip
between a worker and the head (the call out, the reply back: 2 x 2 shaped hops x delay).

Latency needs the kernel's ``sch_netem``. Where it is missing (as on the machine the
numbers in ``benchmarks/README.md`` come from), the emulated links are rate-limited
with ``tbf`` and add no delay: :func:`effective_delay` then gives ``"0"``.
"""

from __future__ import annotations

import re

INLINE_BYTES = 100 * 1024
# emulate.sh's tbf lets this many bytes through each shaped hop at line rate before the
# rate applies; the bucket refills between rounds (64 KiB in 5 ms at 100 mbit).
BURST_BYTES = 64 * 1024
_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}


def rate_bits_per_s(rate: str) -> float:
    """``"100mbit"`` -> 1e8 (tc's units: kbit, mbit, gbit)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg]?)bit", rate.strip().lower())
    if not match:
        raise ValueError(f"rate must look like '100mbit' or '10mbit', got {rate!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def delay_seconds(delay: str) -> float:
    """``"1ms"`` -> 0.001 (tc's units: us, ms, s)."""
    if delay.strip() == "0":
        return 0.0
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(us|ms|s)", delay.strip().lower())
    if not match:
        raise ValueError(f"delay must look like '1ms', got {delay!r}")
    return float(match.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[match.group(2)]


def message_sizes(row: dict) -> tuple[float, float]:
    """(uplink message, downlink message) bytes of one worker, from a run's medians."""
    K, per_round = row["workers"], row["bytes_per_round"]
    if row["mode"] == "master":
        return per_round["bytes_up"] / K, per_round["bytes_down"] / K
    return per_round["bytes_peer"] / max(1, K * (K - 1)), 0.0


def busiest_pipe_bytes(row: dict, inline: int = INLINE_BYTES
                       ) -> tuple[list[float], str, bool]:
    """Bytes per round on the busiest link, one entry per direction, which link that is,
    and whether its directions overlap (rounds ahead) or follow one another."""
    K = row["workers"]
    up, down = message_sizes(row)
    if row["mode"] == "master":
        return [K * up, K * down], "head in+out", False
    if up <= inline:
        return [K * up, K * (K - 1) * up], "head in|out", True
    return [(K - 1) * up], "worker out", True


def round_floor_s(row: dict, rate: str, delay: str, inline: int = INLINE_BYTES,
                  burst: int = BURST_BYTES) -> dict:
    """The physical floor of one round and its parts (seconds)."""
    legs, pipe, overlapped = busiest_pipe_bytes(row, inline)
    legs_s = [max(0.0, b - burst) * 8.0 / rate_bits_per_s(rate) for b in legs]
    wire = max(legs_s) if overlapped else sum(legs_s)
    latency = 4 * delay_seconds(delay)
    floor = wire + latency + row["compute_s"] + row["encode_s"]
    return {"busiest_pipe": pipe, "busiest_bytes": sum(legs), "wire_s": wire,
            "latency_s": latency, "floor_s": floor}


def effective_delay(shaping: str, delay: str) -> str:
    """The delay the links really add: ``delay`` under netem, ``"0"`` under tbf."""
    return delay if shaping.startswith("netem") else "0"
