"""What ``step_size="auto"`` costs against the run it chooses, and how accurate it is (issue #11 §3).

Per problem, each measurement in a fresh process (cold: compilation included everywhere):

* ``auto``: ``estimate_llc(step_size="auto")`` with every other argument at its default; its total seconds, and
  the part spent choosing (calibrations, curvature) versus sampling (the warm-up at ε_w, burn-in and draws);
* ``alone``: the run it chose, alone: ``estimate_llc`` at the chosen ε for as many steps as auto sampled (its
  warm-up steps added to the burn-in; the draws of any continuation included), from w*: what a user who knew the
  settings would run, compilation included.

Ratios: ``total / alone``, the cost of choosing against the run chosen (issue #11: at most 2), and
``total / sampling`` (within the auto call; on CPU, where the grids compile the run's program, the sampling
side no longer includes a compilation). Accuracy: λ̂ against the reference (Aoyagi's λ for
DLNs). ``--write`` puts the table in benchmarks/RESULTS.md.

    python benchmarks/auto_cost.py            # the DLN suite (2-5 layers, 14 networks)
    python benchmarks/auto_cost.py --only 0 2 --write
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import jax

try:
    from benchmarks._results import run_child, write_section
except ImportError:  # run as a script from benchmarks/
    from _results import run_child, write_section

ROOT = Path(__file__).resolve().parent.parent

# the DLN accuracy suite of benchmarks/dln_accuracy.py: 2-5 layers, widths 3-30, ranks 0-6
try:
    from benchmarks.dln_accuracy import CONFIGS, nuts_reference
except ImportError:  # run as a script from benchmarks/
    from dln_accuracy import CONFIGS, nuts_reference

# the settings of the NUTS references (benchmarks/nuts_reference.json): the DLN's defaults
NUTS_ARGS = argparse.Namespace(point="minimum", num_data=10000, seed=0, localization=1.0)

PROBLEMS = [(f"DLN {'-'.join(map(str, w))} r{r}", w, r) for w, r in CONFIGS]
# the small neural networks of benchmarks/nn_accuracy.py (n = 2000, γ = 1): reference NUTS at the same nβ and γ
NN_PROBLEMS = ["tanh", "gelu", "attention"]
NN_NUTS = Path(__file__).with_name("nn_nuts_reference.json")


def nn_nuts(name: str) -> float:
    prefix = f"{name} n=2000 seed=0 gamma=1 "
    entries = [v for k, v in json.loads(NN_NUTS.read_text()).items() if k.startswith(prefix)]
    return max(entries, key=lambda v: v.get("nuts_draws", 0))["nuts"] if entries else float("nan")


CHILD = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
import jax, slt
spec = json.loads(sys.argv[1])
if spec["kind"] == "nn":  # trained to a float64 minimum (a few seconds), estimated in float32 as nn_accuracy.py
    from benchmarks._nn_problems import make_problem
    q = make_problem(spec["name"])
    loss_fn, params, data, true = q.loss_fn, q.params32(), q.data32(), float("nan")
else:
    p = slt.models.deep_linear_network(spec["widths"], spec["rank"], num_data=10000, seed=0, point="minimum")
    loss_fn, params, data, true = p.loss_fn, p.params, p.data, float(p.true_llc)
start = time.perf_counter()
if spec["mode"] == "auto":
    r = slt.estimate_llc(loss_fn, params, data, key=jax.random.key(0), step_size="auto")
    total = time.perf_counter() - start
    a = r.auto
    out = dict(total=total, choosing=a.calibration_seconds, warmup=a.warmup_seconds, step_size=r.step_size,
               num_burnin=r.burnin_loss_trace.shape[1], num_draws=r.num_draws, num_warmup=a.num_warmup, llc=r.llc_mean,
               mcse=r.llc_mcse, true=true)
else:
    r = slt.estimate_llc(loss_fn, params, data, key=jax.random.key(0), step_size=spec["step_size"],
                         num_burnin=spec["num_burnin"], num_draws=spec["num_draws"])
    out = dict(total=time.perf_counter() - start, llc=r.llc_mean)
print("RESULT" + json.dumps(out))
"""


def child(spec: dict) -> dict:
    return run_child(CHILD, spec, ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", type=int, nargs="*", help="problem indices")
    parser.add_argument("--nn", action="store_true", help="the small neural networks instead of the DLN suite")
    parser.add_argument("--write", action="store_true", help="write the table into benchmarks/RESULTS.md")
    args = parser.parse_args()
    if args.nn:
        problems = [(name, None, None) for name in NN_PROBLEMS]
    else:
        problems = PROBLEMS if not args.only else [PROBLEMS[i] for i in args.only]
    rows = []
    start = time.perf_counter()
    for name, widths, rank in problems:
        what = {"kind": "nn" if args.nn else "dln", "name": name, "widths": widths, "rank": rank}
        auto = child({"mode": "auto", **what})
        fixed = child(
            {
                "mode": "fixed",
                **what,
                "step_size": auto["step_size"],
                "num_burnin": auto["num_warmup"] + auto["num_burnin"],
                "num_draws": auto["num_draws"],
            }
        )
        sampling = auto["total"] - auto["choosing"]
        row = dict(
            name=name,
            total=auto["total"],
            choosing=auto["choosing"],
            sampling=sampling,
            fixed=fixed["total"],
            ratio_sampling=auto["total"] / sampling,
            ratio_fixed=auto["total"] / fixed["total"],
            error=auto["llc"] / auto["true"] - 1,
            llc=auto["llc"],
            true=auto["true"],
            step_size=auto["step_size"],
            num_warmup=auto["num_warmup"],
            num_burnin=auto["num_burnin"],
            num_draws=auto["num_draws"],
        )
        if args.nn:
            row["vs_nuts"] = auto["llc"] / nn_nuts(name) - 1
        else:
            nuts = nuts_reference(widths, rank, NUTS_ARGS)
            row["vs_nuts"] = auto["llc"] / nuts["nuts"] - 1 if nuts else float("nan")
        rows.append(row)
        print(
            f"{name:>26}: total {row['total']:6.1f} s (choosing {row['choosing']:5.1f}, sampling {sampling:5.1f}), "
            f"run alone {row['fixed']:5.1f} s; total/sampling {row['ratio_sampling']:.2f}, total/alone "
            f"{row['ratio_fixed']:.2f}; λ̂ {row['llc']:.4g} vs λ {row['true']:.4g} ({row['error']:+.1%}; vs NUTS "
            f"{row['vs_nuts']:+.1%})",
            flush=True,
        )
    wall = time.perf_counter() - start
    header = (
        "| problem | λ | λ̂ auto | error | vs NUTS | ε | warm-up / burn-in / draws | total s | choosing s | "
        "sampling s | run alone s | total/sampling | total/alone |\n" + "|---" * 13 + "|"
    )
    lines = [header]
    for r in rows:
        lines.append(
            f"| {r['name']} | "
            + (
                f"{r['true']:.4g} | {r['llc']:.4g} | {r['error']:+.1%} | "
                if r["true"] == r["true"]
                else f"— | {r['llc']:.4g} | — | "
            )
            + (f"{r['vs_nuts']:+.1%}" if r["vs_nuts"] == r["vs_nuts"] else "—")
            + f" | {r['step_size']:.2g} | "
            f"{r['num_warmup']} / {r['num_burnin']} / {r['num_draws']} | {r['total']:.1f} | {r['choosing']:.1f} | "
            f"{r['sampling']:.1f} | {r['fixed']:.1f} | {r['ratio_sampling']:.2f} | {r['ratio_fixed']:.2f} |"
        )
    errors = [abs(r["error"]) for r in rows if r["error"] == r["error"]]
    ratios = [r["ratio_fixed"] for r in rows]
    vs_nuts = [abs(r["vs_nuts"]) for r in rows if r["vs_nuts"] == r["vs_nuts"]]
    summary = (
        (f"median |error| {statistics.median(errors):.1%}, max {max(errors):.1%}; " if errors else "")
        + (f"against NUTS median {statistics.median(vs_nuts):.1%}, max {max(vs_nuts):.1%}; " if vs_nuts else "")
        + "total/alone median "
        f"{statistics.median(ratios):.2f}, max {max(ratios):.2f}; total/sampling median "
        f"{statistics.median([r['ratio_sampling'] for r in rows]):.2f}"
    )
    print(summary)
    if args.write:
        only = (" --only " + " ".join(map(str, args.only)) if args.only else "") + (" --nn" if args.nn else "")
        body = (
            f"Run {datetime.date.today()} on {platform.machine()} ({jax.default_backend()}, JAX {jax.__version__}), "
            f"total {wall:.0f} s: `python benchmarks/auto_cost.py{only} --write`\n\n"
            "Every measurement in a fresh process (compilation included). *choosing*: curvature and the two "
            "calibration grids (on CPU they compile the one program all stages share); *sampling*: the warm-up "
            "at ε_w, burn-in and draws; *run alone*: `estimate_llc` at the chosen ε for as many steps (warm-up "
            "steps added to the burn-in) from w*, compilation included: what the chosen run costs by itself.\n\n"
            + "\n".join(lines)
            + f"\n\n{summary}.\n"
        )
        write_section("Cost of step_size='auto' (issue #11)" + (": small neural networks" if args.nn else ""), body)


if __name__ == "__main__":
    main()
