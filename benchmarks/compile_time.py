"""Compile time and run time of a sampling run: the minibatch-index draw of the RNG scheme (``slt._src.rng``).

Each measurement in a fresh process: ``estimate_llc`` at a fixed step on a problem, cold (compilation included)
and again warm (same shapes, another key); compile ≈ cold − warm. ``--mode randint`` swaps in the previous
draw (``jax.random.randint`` on a (block, batch) shape) for comparison. Modes alternate, ``--repeats`` times,
and the minimum is reported (the machine may be shared). CPU seconds (process time) are reported beside wall
seconds: compilation is single-threaded, so its CPU time is the steadier figure on a loaded machine.

    python benchmarks/compile_time.py            # prints the table
    python benchmarks/compile_time.py --write    # and the section of benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
from pathlib import Path

try:
    from benchmarks._results import run_child, write_section
except ImportError:  # run as a script
    from _results import run_child, write_section

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
import jax, slt
import slt._src.rng as rng
spec = json.loads(sys.argv[1])
if spec["mode"] == "randint":
    def block_randomness(chain_key, b, *, block, batch_size, num_data):
        index_key, step_key = jax.random.split(jax.random.fold_in(chain_key, b))
        idx = None if batch_size == num_data else jax.random.randint(index_key, (block, batch_size), 0, num_data)
        return idx, jax.random.split(step_key, block)
    rng.block_randomness = block_randomness
p = slt.models.deep_linear_network(spec["widths"], spec["rank"], num_data=10000, seed=0, point="minimum")
out = {}
for name, k in (("cold", 0), ("warm", 1)):
    w, c = time.perf_counter(), time.process_time()
    r = slt.estimate_llc(p.loss_fn, p.params, p.data, key=jax.random.key(k), step_size=spec["step_size"],
                         num_draws=spec["num_draws"], num_burnin=spec["num_burnin"], num_chains=spec["num_chains"],
                         batch_size=spec["batch_size"])
    out[name] = (time.perf_counter() - w, time.process_time() - c)
print("RESULT" + json.dumps(out))
"""

PROBLEMS = {
    "DLN 5-3-5": dict(widths=[5, 3, 5], rank=0, step_size=1e-4),
    "DLN 10-20-20-10": dict(widths=[10, 20, 20, 10], rank=5, step_size=5e-6),
}


def child(spec: dict) -> dict:
    return run_child(CHILD, spec, ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-chains", type=int, default=4)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    run = dict(num_draws=2000, num_burnin=1000, num_chains=args.num_chains, batch_size=256)
    rows = []
    for name, problem in PROBLEMS.items():
        best = {}
        for _ in range(args.repeats):
            for mode in ("randint", "bits"):
                r = child({**problem, **run, "mode": mode})
                b = best.setdefault(mode, {k: list(v) for k, v in r.items()})
                for k in r:
                    b[k] = [min(x, y) for x, y in zip(b[k], r[k])]
        for mode in ("randint", "bits"):
            cold, warm = best[mode]["cold"], best[mode]["warm"]
            rows.append(
                f"| {name} | {mode} | {cold[0]:.2f} | {warm[0]:.2f} | {cold[0] - warm[0]:.2f} | {cold[1]:.2f} | "
                f"{warm[1]:.2f} | {cold[1] - warm[1]:.2f} |"
            )
            print(rows[-1], flush=True)
        r, b = best["randint"], best["bits"]
        rows.append(
            f"| {name} | ratio randint/bits | {r['cold'][0] / b['cold'][0]:.2f} | {r['warm'][0] / b['warm'][0]:.2f} | "
            f"{(r['cold'][0] - r['warm'][0]) / (b['cold'][0] - b['warm'][0]):.2f} | | | |"
        )
        print(rows[-1], flush=True)
    load = os.getloadavg()
    body = (
        f"Run {datetime.date.today()} on {platform.machine()} ({os.cpu_count()} cores; "
        f"load average {load[0]:.1f} at the end), `python benchmarks/compile_time.py --write`: `estimate_llc` at a "
        f"fixed step, {run['num_chains']} chains, 1,000 + 2,000 steps, batch 256 of n = 10,000, each in a fresh "
        f"process, cold then warm; minimum of {args.repeats} alternating repeats. *randint*: the previous minibatch "
        "draw (`jax.random.randint` on a (block, batch) shape); *bits*: `bits mod n` over one flat draw "
        "(`slt._src.rng.minibatch_indices`, now the default).\n\n"
        "| problem | draw | cold s | warm s | compile s (cold − warm) | cold CPU s | warm CPU s | compile CPU s |\n"
        "|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    if args.write:
        write_section("Compile time: the minibatch-index draw", body)


if __name__ == "__main__":
    main()
