"""Plant one-line bugs in the core modules, one at a time, and see which the tests miss.

Usage (``make mutate`` runs the first form)::

    python tools/mutate.py                 # every mutation; prints the survivors
    python tools/mutate.py --list          # the mutations, numbered
    python tools/mutate.py 3 downlink      # only numbers / names containing a word

Each mutation replaces one exact snippet of a module with a plausible bug and runs only
the fast test files (or test ids, ``-k`` expressions) that should catch it, with ``-x``.
It works on a copy of the package and tests in a temporary directory, so the tree is
never modified, whatever happens (Ctrl-C included). Before the mutations, every test
selection runs once on the unmodified copy: a red baseline would make every mutation
look caught. A snippet that no longer matches exactly once stops the script before
anything runs: the code changed, so the mutation list must be updated.

A *survivor* is a mutation every selected test passes with. Each one is either a gap
in the tests (write the test that kills it) or an equivalent mutation: the code means
the same. Equivalent ones carry the reason in ``equivalent`` and are reported apart.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PER_RUN_TIMEOUT_S = 900


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str                    # relative to the repository root
    original: str                # must occur exactly once in the file
    mutated: str
    tests: tuple[str, ...]       # pytest arguments: files, test ids, "-k", expressions
    equivalent: str | None = None   # why the mutated code means the same, if it does


# Test selections: fast files, or the few Ray tests that exercise the code in question.
ALGORITHM = ("tests/test_algorithm.py",)
MODEL = ("tests/test_models.py",)
CHECKPOINT = ("tests/test_checkpoint.py",)
CODECS = ("tests/test_codecs.py", "-k", "not qsgd_is_unbiased and not extreme_magnitudes "
          "and not bucket_variance")
CODEC_VALUES = ("tests/test_codec_values.py", "-k", "not on_ray and not downlink")
CODECS_STATS = ("tests/test_codecs.py", "-k", "qsgd_is_unbiased or biased_quantizer")
FUZZ = ("tests/test_codecs_fuzz.py",)
KERNELS = ("tests/test_codec_kernels.py",)     # pins the bitstream, byte for byte
E = "tests/test_engine.py::"
ENGINE_EXACT = (E + "test_fit_matches_the_algorithm_written_out_by_hand",
                E + "test_master_and_all_to_all_give_the_same_trajectory")
ENGINE_DOWNLINK = (E + "test_encoded_downlink_fit_matches_reference_draw_for_draw",)
ENGINE_FAULTS = (E + "test_killed_worker_restarts_and_the_history_is_unchanged",
                 E + "test_all_to_all_survives_worker_0_dying_at_snapshot_rounds")
ENGINE_SNAPSHOTS = (E + "test_all_to_all_survives_worker_0_dying_at_snapshot_rounds",
                    E + "test_replays_from_rotated_snapshots_are_exact")
ENGINE_BYTES = (E + "test_qsgd_bytes_are_the_sum_of_the_real_message_sizes",
                E + "test_bytes_are_the_real_message_sizes")
ENGINE_RESUME = (E + "test_resume_continues_exactly",)
ENGINE_AHEAD = (E + "test_rounds_ahead_stop_exactly_where_tol_is_met",)
ENGINE_PLAN = (E + "test_master_submits_ahead_only_where_every_round_relays",)
EF = "tests/test_error_feedback.py"
EF_EXACT = (EF + "::test_error_feedback_fit_is_the_reference",)
EF_FAULTS = (EF + "::test_killed_workers_replay_their_memory_exactly",)
EF_RESUME = (EF + "::test_resume_carries_the_memory",)
FB = "ray_relu/codecs/feedback.py"

A, C, W, K = ("ray_relu/algorithm.py", "ray_relu/coordinator.py", "ray_relu/worker.py",
              "ray_relu/checkpoint.py")
MB, SI, SH = "ray_relu/models/base.py", "ray_relu/models/single_index.py", "ray_relu/shards.py"
ROWS = "ray_relu/models/_rows.py"
PW = "ray_relu/push_worker.py"
PUSH_EXACT = (E + "test_push_with_three_uneven_workers_is_the_reference",)
PUSH_DELIVERY = (E + "test_push_moves_messages_worker_to_worker_and_drops_stale_generations",)
Q, BASE, RAW, FP16, FULL, BITS = (
    "ray_relu/codecs/qsgd.py", "ray_relu/codecs/base.py", "ray_relu/codecs/_raw.py",
    "ray_relu/codecs/fp16.py", "ray_relu/codecs/fullprec.py", "ray_relu/codecs/bitcoding.py")
KERN = "ray_relu/codecs/_kernels.py"
QUANT = "ray_relu/codecs/_quantize.py"
DENSE = "ray_relu/codecs/_dense.py"
ANS = "ray_relu/codecs/_ans.py"
PCG = "ray_relu/codecs/_pcg64.py"

MUTATIONS = [
    # ---- the five bugs of issue 15
    Mutation("issue 1: downlink without its (seed, DOWNLINK, t) stream", C,
             "delta, value, self.downlink_residual = algorithm.compress_downlink(\n"
             "                self.downlink, -self.step_size * g, self.downlink_residual,\n"
             "                self.plan.seed, t)",
             "delta, value, self.downlink_residual = (\n"
             "                *self.downlink.encode_with_value(-self.step_size * g), None)",
             ENGINE_DOWNLINK),
    Mutation("issue 2: default step 1/c instead of 1/(2c)", MB,
             "mean / c))", "2.0 * mean / c))", MODEL),
    Mutation("issue 3: moment start (1/n) instead of (2/n)", SI,
             "return (1.0 / (self._moment_gain * n)) * statistic",
             "return (1.0 / n) * statistic", ALGORITHM),
    Mutation("issue 4: every worker draws the same rows", A,
             "rng_for(seed, BATCH, t, k)", "rng_for(seed, BATCH, t)", ALGORITHM),
    # Issue 5's line is gone: recovery now replays from a snapshot of worker 0's
    # replica. Its analog: the snapshot of round c is not w_c (worker 0, running rounds
    # ahead, answers with its newest replica).
    Mutation("issue 5: snapshot of round c taken from a later replica", W,
             "return self.exact.encode(self.replica_at(t))",
             "return self.exact.encode(self.replica_at())", ENGINE_SNAPSHOTS),
    # ---- algorithm.py (shared by engine and reference: pinned by test_algorithm.py)
    Mutation("batches drawn with replacement", A,
             "batch_rows, replace=False)", "batch_rows, replace=True)", ALGORITHM),
    Mutation("batches not sorted", A, "return np.sort(idx)", "return idx", ALGORITHM),
    Mutation("every worker quantizes with the same stream", A,
             "rng_for(seed, QUANTIZE, t, k))", "rng_for(seed, QUANTIZE, t))", ALGORITHM),
    Mutation("the downlink reuses one stream every iteration", A,
             "rng_for(seed, DOWNLINK, t))", "rng_for(seed, DOWNLINK, 0))", ALGORITHM),
    Mutation("average drops the weight of worker 0", A,
             "total = weights[0] * grads[0]", "total = grads[0].copy()", ALGORITHM),
    Mutation("average in reverse worker order", A,
             "    total = weights[0] * grads[0]\n"
             "    for wk, gk in zip(weights[1:], grads[1:]):",
             "    total = weights[-1] * grads[-1]\n"
             "    for wk, gk in zip(weights[-2::-1], grads[-2::-1]):", ALGORITHM),
    Mutation("sgd_step updates w in place", A,
             "return w - step_size * g", "w -= step_size * g\n    return w", ALGORITHM),
    Mutation("moment start adds into the first partial sum", A,
             "total = statistics[0].copy()", "total = statistics[0]", ALGORITHM),
    Mutation("relative change divides by the new w", A,
             "denom = float(np.linalg.norm(w_old))", "denom = float(np.linalg.norm(w_new))",
             ALGORITHM),
    Mutation("error meter squares the norm of w*", MB,
             "np.linalg.norm(w - w_star), np.linalg.norm(w_star))",
             "np.linalg.norm(w - w_star), np.linalg.norm(w_star) ** 2)",
             ALGORITHM),
    # ---- models/
    Mutation("c(m): (d + 1) instead of (d + 2)", MB,
             "return second * (d + 2) / m", "return second * (d + 1) / m", MODEL),
    Mutation("Hessian edge without the factor 2", MB,
             "math.sqrt(d / (active * m))", "math.sqrt(d / m)", MODEL),
    Mutation("codec term assumes an even batch split", MB,
             "for mk in split_evenly(m, K) if mk > 0)", "for mk in [m // K] * K if mk > 0)",
             MODEL),
    Mutation("downlink variance ignored", MB,
             "c *= 1.0 + check_float(\"downlink_variance\", downlink_variance, minimum=0.0)",
             "check_float(\"downlink_variance\", downlink_variance, minimum=0.0)", MODEL),
    Mutation("relu'(0) = 0", ROWS, "r, slope = -y[i], 0.5 + 0.5 * negative_slope",
             "r, slope = -y[i], negative_slope", MODEL),
    Mutation("loss without the 1/2", ROWS, "return 0.5 * loss / m, g / m",
             "return loss / m, g / m", MODEL),
    Mutation("dot product's lane sums added in another order", ROWS,
             "b.fadd(b.fadd(a[0], a[1]), b.fadd(a[2], a[3]))",
             "b.fadd(b.fadd(a[0], a[2]), b.fadd(a[1], a[3]))", MODEL),
    Mutation("dot product's tail skips its first element", ROWS,
             "for j in range(_LANES * (x.size // _LANES), x.size):",
             "for j in range(_LANES * (x.size // _LANES) + 1, x.size):", MODEL),
    Mutation("shard bounds drop the remainder", SH,
             "return k * n // K, (k + 1) * n // K", "return k * (n // K), (k + 1) * (n // K)",
             MODEL),
    # ---- coordinator.py
    Mutation("master counts every uplink message as long as worker 0's", C,
             "up = sum(len(m) for m in messages)\n        if self.feedback:",
             "up = self.K * len(messages[0])\n        if self.feedback:",
             ENGINE_BYTES),
    Mutation("loss averaged without the batch weights", C,
             "return float(sum(wk * v for wk, v in zip(self.plan.weights, values)))",
             "return float(sum(values) / len(values))", ENGINE_EXACT),
    Mutation("master recovery ships the previous w", C,
             "recovery or _shipped(self.exact.encode(self.w))",
             "recovery or _shipped(self.exact.encode(self._previous if self._previous is "
             "not None else self.w))", ENGINE_FAULTS),
    Mutation("master submits ahead where a round may ship w", C,
             "self._relay_is_shorter((self.K - 1) * self.K * bound, n)",
             "self._relay_is_shorter((self.K - 1) * bound, n)", ENGINE_PLAN),
    Mutation("master's relay rule forgets its slack", C,
             "return relayed < self.K * (HEADER_SIZE + 8 * n + RELAY_SLACK_BYTES)",
             "return relayed < self.K * (HEADER_SIZE + 8 * n)", ENGINE_PLAN),
    Mutation("master's round ahead takes the wrong round's messages", C,
             "        for r in range(t + 1, min(t + PIPELINE_DEPTH - 1, self.last_round) + 1):",
             "        for r in range(t + 2, min(t + PIPELINE_DEPTH - 1, self.last_round) + 1):",
             ENGINE_AHEAD),
    Mutation("all-to-all adopts a snapshot under the wrong round", C,
             'self._snapshot = (c, "set", [_shipped(message)],',
             'self._snapshot = (c + 1, "set", [_shipped(message)],', ENGINE_SNAPSHOTS),
    Mutation("all-to-all replays one round too few", C,
             "while self._submitted < through:", "while self._submitted < through - 1:",
             ENGINE_FAULTS),
    Mutation("all-to-all result is a later round's w", C,
             "lambda: self._get([self.workers[0].replica_at.remote(self.t)],",
             "lambda: self._get([self.workers[0].replica_at.remote()],",
             ENGINE_AHEAD),
    # ---- worker.py
    Mutation("all-to-all replicas average without the batch weights", W,
             "algorithm.average(grads, self.plan.weights)",
             "algorithm.average(grads, [1 / len(grads)] * len(grads))", ENGINE_EXACT),
    Mutation("a worker counts its own init statistic as received", W,
             'if not (kind == "statistic" and j == self.k)\n', 'if not False\n',
             ENGINE_BYTES),
    Mutation("a worker puts its own message first", W,
             "grads.insert(self.k, self.own)", "grads.insert(0, self.own)",
             ENGINE_EXACT),
    Mutation("a worker keeps only its newest replica", W,
             "for old in [r for r in by_round if r <= t - KEPT_REPLICAS or r > t]",
             "for old in [r for r in by_round if r < t]", ENGINE_AHEAD),
    Mutation("a worker applies the master's update with the wrong sign", W,
             "w = self.w + self.downlink.decode(payload[0])",
             "w = self.w - self.downlink.decode(payload[0])", ENGINE_DOWNLINK),
    # ---- push_worker.py
    Mutation("a push worker takes its peers' messages in the wrong order", PW,
             "payload = tuple(self.inbox.pop((t - 1, j)) for j in senders)",
             "payload = tuple(self.inbox.pop((t - 1, j)) for j in reversed(senders))",
             PUSH_EXACT),
    Mutation("a push worker runs calls of an overtaken replay generation", PW,
             "            if self.generation > generation:\n",
             "            if False:\n", PUSH_DELIVERY),
    # ---- checkpoint.py
    Mutation("checkpoint forgets the master's next w", K,
             "    for name in (\"next_w\", \"residuals\", \"downlink_residual\"):",
             "    for name in (\"residuals\", \"downlink_residual\"):", CHECKPOINT),
    Mutation("checkpoint message sizes not checked", K,
             "if offsets[-1] != len(blob):", "if False:", CHECKPOINT),
    Mutation("checkpoint format version not checked", K,
             "if meta.get(\"format\") != FORMAT_VERSION:", "if False:", CHECKPOINT),
    Mutation("checkpoint loses the restart count", K,
             "restarts=int(meta.get(\"restarts\", 0)))", "restarts=0)", CHECKPOINT),
    # ---- codecs: header and raw floats
    Mutation("header accepts a truncated payload", BASE,
             "if payload_len != actual:", "if payload_len < actual:", CODECS),
    Mutation("header accepts d = 0", BASE, "if not 1 <= d <= MAX_DIM:",
             "if not 0 <= d <= MAX_DIM:", CODECS),
    Mutation("header accepts older format versions", BASE,
             "if version != FORMAT_VERSION:", "if version > FORMAT_VERSION:", CODECS),
    Mutation("max_dim off by one", BASE, "header.d > max_dim:", "header.d > max_dim + 1:",
             CODECS),
    Mutation("raw payload size not checked", RAW,
             "if payload.size != expected:", "if payload.size < expected:",
             CODECS),
    Mutation("raw decoder lets NaN through", RAW,
             "if not np.isfinite(out).all():        # the encoder",
             "if False:        # the encoder", CODECS),
    Mutation("overflow limit half a unit too low", RAW,
             "return float(top) + (float(top) - float(below)) / 2",
             "return float(top) + (float(top) - float(below)) / 4", CODECS),
    Mutation("fp16 scale one power of two too high", FP16,
             "return math.frexp(peak)[1] - _TOP_EXPONENT",
             "return math.frexp(peak)[1] - _TOP_EXPONENT + 1", CODECS),
    Mutation("fp16 scale exponent not checked", RAW,
             "if not self._exponent_ok(exponent):", "if False:", CODECS),
    Mutation("from_config passes unknown keys through", BASE,
             "unknown = sorted(set(params) - set(allowed)) if allowed is not None else []",
             "unknown = []", CODEC_VALUES),
    Mutation("a user codec's forgotten constructor argument goes unnoticed", BASE,
             "            if not hasattr(self, name):", "            if False:",
             CODEC_VALUES),
    Mutation("QSGD decodes a message of other levels, bucket or norm", Q,
             "if (self.levels, self.bucket_size or 0, self.norm) != (levels, bucket, norm):",
             "if False:", CODECS),
    Mutation("fp32 config: id and dtype may disagree", FULL,
             "if dtype != by_id[codec_id]:", "if False:", CODECS),
    # ---- codecs: QSGD and bit coding
    Mutation("QSGD rounds to nearest instead of stochastically", QUANT,
             "y = (np.float64(v[j]) * pre) * f + u[j]", "y = (np.float64(v[j]) * pre) * f + 0.5",
             CODECS_STATS),
    Mutation("QSGD max norm ignores negative entries", Q,
             "np.maximum(r.max(axis=1), -r.min(axis=1))", "np.abs(r.max(axis=1))",
             CODECS),
    Mutation("QSGD variance bound 2x too small", Q,
             "min(b / (4 * s ** 2),", "min(b / (8 * s ** 2),", CODECS),
    Mutation("QSGD dense width one bit too wide", Q,
             "self.dense_width = 1 + self.levels.bit_length()",
             "self.dense_width = 2 + self.levels.bit_length()", CODECS),
    Mutation("QSGD auto coding picks the longer body", Q,
             "coding = \"elias\" if -(-nbits // 8) < dense_bytes else \"dense\"",
             "coding = \"elias\" if -(-nbits // 8) > dense_bytes else \"dense\"",
             CODECS + KERNELS),
    Mutation("QSGD accepts a dense body of the wrong size", Q,
             "if body.size != need:", "if body.size > need:", CODECS + FUZZ),
    Mutation("QSGD dense decoder accepts a level above s", DENSE,
             "if mag_max > s:", "if mag_max > s + 1:", CODECS + KERNELS),
    Mutation("QSGD dense decoder accepts negative zero", DENSE,
             "if negative_zero:", "if False:", CODECS + KERNELS),
    Mutation("QSGD sparse decoder accepts a level above s", KERN,
             "if level_max > s:", "if level_max > s + 1:", CODECS + KERNELS),
    Mutation("QSGD sparse decoder: last position may be d", KERN,
             "    if i >= d:\n        return E_PAST_D, i", "    if i > d:\n        return E_PAST_D, i",
             CODECS + KERNELS),
    Mutation("QSGD first gap counted from 0", KERN,
             "    i = -1\n", "    i = 0\n", CODECS + KERNELS),
    Mutation("QSGD sparse decoder ignores trailing bytes", KERN,
             "if (pos + 7) // 8 != nbytes:", "if (pos + 7) // 8 > nbytes:", CODECS + KERNELS),
    Mutation("QSGD auto coding never tries rANS", Q,
             "(coding == \"auto\" and k * _ANS_TRIAL >= d)",
             "(coding == \"auto\" and k * _ANS_TRIAL > 2 * d)", CODECS + KERNELS),
    Mutation("rANS decoder skips the end-state check", ANS,
             "    if x0 != _U64(_LOW) or x1 != _U64(_LOW):", "    if False:", CODECS + KERNELS),
    Mutation("rANS decoder accepts a level above s", ANS,
             "if level_max > s:", "if level_max > s + 1:", CODECS + KERNELS),
    Mutation("rANS table need not sum to 2**14", ANS,
             "if total != _TOTAL or freq[n - 1] == 0:", "if freq[n - 1] == 0:",
             CODECS + KERNELS),
    Mutation("rANS escaped magnitude off by one", ANS,
             "m = abs(lev[j]) - ESCAPE + 1", "m = abs(lev[j]) - ESCAPE + 2", CODECS + KERNELS),
    Mutation("rANS slack given to the first symbol", ANS,
             "            if counts[t] > counts[top]:", "            if False:", KERNELS),
    Mutation("compiled PCG64 drops the 128-bit carry", PCG,
             "return ahi + bhi + _U64(lo < alo), lo", "return ahi + bhi, lo", KERNELS),
    Mutation("vector PCG64 lanes drop the low word's carry", PCG,
             "b.store(b.add(b.add(p_high, c_hi), carry), p_hi, align=8)",
             "b.store(b.add(p_high, c_hi), p_hi, align=8)", KERNELS),
    Mutation("vector 64 x 64 multiply loses the middle sum's carry", PCG,
             "b.add(b.lshr(p10, s32), b.lshr(mid, s32))", "b.lshr(p10, s32)", KERNELS),
    Mutation("encoding leaves numpy's generator where it was", Q,
             "            _pcg64.store(rng, state)\n", "", KERNELS),
    Mutation("quantizer files a flagged level one byte off", QUANT,
             "j = 8 * w + np.int64(_ctz(flags) >> _U64(3))",
             "j = 8 * w + np.int64(_ctz(flags) >> _U64(4))", KERNELS),
    Mutation("dense table decoder lets a -0 field through", DENSE,
             "bad[code] = ((code & mask) > s) | (code == mask + 1)",
             "bad[code] = ((code & mask) > s)", KERNELS),
    Mutation("dense table decoder reads a group one byte late", DENSE,
             "            at = (i >> 3) * width\n", "            at = (i >> 3) * width + 1\n",
             KERNELS),
    Mutation("gamma code one bit longer", BITS,
             "return 2 * bit_length(n) - 1", "return 2 * bit_length(n)", CODECS),
    Mutation("stream cut to whole bytes", KERN,
             "_flush(words, a3, h3, w3)\n    return _to_bytes(words, (nbits + 7) // 8)",
             "_flush(words, a3, h3, w3)\n    return _to_bytes(words, nbits // 8)",
             CODECS + KERNELS),
    Mutation("sender's copy of its message takes the wrong bucket's step", KERN,
             "_value(lev[j], steps[idx[j] // bsize], factor)",
             "_value(lev[j], steps[j // bsize], factor)",
             ("tests/test_codecs.py", "-k", "encode_with_value")),
    # ---- error feedback: the memory is state
    Mutation("error feedback forgets the memory", FB,
             "corrected = g if residual is None else g + residual", "corrected = g",
             ("tests/test_compressors.py",) + EF_EXACT),
    Mutation("worker encodes with no memory", W,
             "self.codec, g, self.residuals.get(t), self.plan.seed, t, self.k)",
             "self.codec, g, None, self.plan.seed, t, self.k)", EF_EXACT),
    Mutation("master replays a restarted worker without its memory", C,
             "            payload.append(self._snap[\"residuals\"][k])", "            pass",
             EF_FAULTS),
    Mutation("checkpoint drops the workers' memories", K,
             "    for name in (\"next_w\", \"residuals\", \"downlink_residual\"):",
             "    for name in (\"next_w\", \"downlink_residual\"):", EF_RESUME),
]


def check_snippets(mutations: list[Mutation]) -> None:
    """Fail loudly, before running anything, if a snippet no longer matches once."""
    problems = []
    for i, m in enumerate(mutations, 1):
        text = (ROOT / m.file).read_text()
        count = text.count(m.original)
        if count != 1:
            problems.append(f"#{i} {m.name}: snippet found {count} times in {m.file} "
                            f"(expected once):\n    {m.original!r}")
        if m.original == m.mutated:
            problems.append(f"#{i} {m.name}: the mutation changes nothing")
    if problems:
        sys.exit("mutate.py: the code changed under these mutations; update them:\n"
                 + "\n".join(problems))


def make_copy() -> Path:
    """A fresh temporary copy of the package, the tests and the pytest settings."""
    tmp = Path(tempfile.mkdtemp(prefix="ray_relu_mutant_"))
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "ray_relu", tmp / "ray_relu", ignore=skip)
    shutil.copytree(ROOT / "tests", tmp / "tests", ignore=skip)
    shutil.copy2(ROOT / "pyproject.toml", tmp / "pyproject.toml")
    return tmp


def run_tests(copy: Path, tests: tuple[str, ...]) -> tuple[int, str]:
    """Run pytest on ``copy`` (its package shadows the installed one, in this process
    through the working directory and in Ray workers through PYTHONPATH).

    numba's on-disk cache (the QSGD kernels are ``cache=True``) goes to a directory of
    the copy itself, so every run compiles the (possibly mutated) kernels afresh: a
    cache shared between runs could hand a mutant the machine code of the original,
    and the mutation would silently not run."""
    env = dict(os.environ, PYTHONPATH=str(copy), RAY_USAGE_STATS_ENABLED="0",
               PYTHONDONTWRITEBYTECODE="1", NUMBA_CACHE_DIR=str(copy / ".numba_cache"))
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
           "--no-header", "-o", "addopts=", *tests]
    proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True,
                          timeout=PER_RUN_TIMEOUT_S)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return proc.returncode, lines[-1] if lines else ""


def run_one(m: Mutation) -> tuple[int, str]:
    copy = make_copy()
    try:
        target = copy / m.file
        target.write_text(target.read_text().replace(m.original, m.mutated, 1))
        return run_tests(copy, m.tests)
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def baseline(mutations: list[Mutation]) -> None:
    """Every distinct test selection must pass on the unmodified code."""
    for tests in dict.fromkeys(m.tests for m in mutations):
        copy = make_copy()
        try:
            code, last = run_tests(copy, tests)
        finally:
            shutil.rmtree(copy, ignore_errors=True)
        if code != 0:
            sys.exit(f"mutate.py: baseline red (exit {code}) for {' '.join(tests)}: {last}")
        print(f"baseline ok: {' '.join(tests)}  ({last})", flush=True)


def select(words: list[str]) -> list[tuple[int, Mutation]]:
    numbered = list(enumerate(MUTATIONS, 1))
    if not words:
        return numbered
    return [(i, m) for i, m in numbered
            if any(w == str(i) if w.isdigit() else w.lower() in m.name.lower()
                   for w in words)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("only", nargs="*", help="mutation numbers or words of their names")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the run of each test selection on unmodified code")
    args = parser.parse_args()
    check_snippets(MUTATIONS)
    chosen = select(args.only)
    if args.list or not chosen:
        for i, m in chosen or select([]):
            print(f"{i:3d}  {m.file:28s} {m.name}")
        return 0 if chosen else 2
    if not args.no_baseline:
        baseline([m for _, m in chosen])
    survivors, equivalent, errors = [], [], []
    for i, m in chosen:
        begin = time.monotonic()
        code, last = run_one(m)
        outcome = {0: "SURVIVED", 1: "killed"}.get(code, f"ERROR (pytest exit {code})")
        print(f"{i:3d} {outcome:9s} {time.monotonic() - begin:6.1f}s  {m.name}  [{last}]",
              flush=True)
        if code == 0:
            (equivalent if m.equivalent else survivors).append((i, m))
        elif code != 1:
            errors.append((i, m))
    print(f"\n{len(chosen)} mutations: {len(chosen) - len(survivors) - len(equivalent) - len(errors)}"
          f" killed, {len(survivors)} survived, {len(equivalent)} equivalent, "
          f"{len(errors)} errors")
    for i, m in survivors:
        print(f"  SURVIVOR #{i}: {m.name} ({m.file})")
    for i, m in equivalent:
        print(f"  equivalent #{i}: {m.name}: {m.equivalent}")
    for i, m in errors:
        print(f"  ERROR #{i}: {m.name}: pytest neither passed nor failed")
    return 1 if survivors or errors else 0


if __name__ == "__main__":
    sys.exit(main())
