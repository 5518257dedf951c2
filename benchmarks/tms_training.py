"""The toy model of superposition over training: loss and LLC through the k-gon transitions (issue #13).

Chen, Lau, Mendel, Wei, Murfet (arXiv 2310.06301) report that SGD on the TMS (c = 6 features, 2 hidden dims)
moves between k-gon critical points: at each transition the loss drops and the LLC rises, an "inverse
relationship between loss and LLC over training". The linear model W^T W x + b (no ReLU) is the control where
"you genuinely don't see superposition": it can only keep a 2-dimensional subspace of the features.

Here, for a few seeds: train with Adam (``slt.models.train_tms``), record ~40 log-spaced checkpoints, estimate the
LLC of each with ``slt.dynamics.llc_trajectory(step_size="auto")`` (ε, γ = 1 and nβ = n/log n chosen once, at
the last checkpoint, and kept for every record), and report

* the plateaus (runs of records whose loss changes by less than 5%) with their loss, the k-gon each one is at
  (features with ‖W_i‖ > 0.5; positive dead biases) and the LLC there, beside the k-gon theory where it applies
  (``slt.models.tms.kgon_llc``: λ = (3(k + σ) − 1)/2 for k ≥ 5);
* Spearman's ρ between loss and LLC over the records after the first plateau (the claim: negative);
* the linear control, with the same settings.

    python benchmarks/tms_training.py            # prints the tables, writes benchmarks/figures/tms_training.png
    python benchmarks/tms_training.py --write    # and the section of benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import platform
import sys
import time
import warnings

import jax
import numpy as np

import slt
from slt.models.tms import kgon_llc, tms_linear_loss, tms_loss

try:
    from benchmarks._results import write_section
except ImportError:  # run as a script
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from _results import write_section

FIGURES = pathlib.Path(__file__).with_name("figures")
LIVE_NORM = 0.5  # a feature with ‖W_i‖ above this is represented
PLATEAU_CHANGE = 0.05  # records whose loss changes by less than this fraction belong to one plateau


def spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def describe_point(params, num_features: int) -> tuple[int, int, str]:
    """(k live features, σ positive dead biases, a label)."""
    w, b = np.asarray(params["W"]), np.asarray(params["b"])
    live = np.linalg.norm(w, axis=0) > LIVE_NORM
    k, sigma = int(live.sum()), int(((~live) & (b > 0)).sum())
    return k, sigma, f"{k}-gon" + (f" + {sigma} positive dead bias" if sigma else "")


def plateaus(losses: np.ndarray, start: int) -> list[tuple[int, int]]:
    """Maximal runs [i, j] (j > i) of records from ``start`` whose consecutive losses change by < PLATEAU_CHANGE."""
    runs, i = [], start
    while i < len(losses) - 1:
        j = i
        while j + 1 < len(losses) and abs(losses[j + 1] / losses[j] - 1) < PLATEAU_CHANGE:
            j += 1
        if j > i:
            runs.append((i, j))
        i = j + 1
    return runs


def track(loss_fn, checkpoints, steps, data, key, args):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traj = slt.dynamics.llc_trajectory(
            loss_fn,
            checkpoints,
            data,
            key=key,
            step_size="auto",
            steps=list(steps),
            localization=1.0,
            num_chains=args.chains,
            time_budget=args.time_budget,
        )
    return traj, [str(w.message) for w in caught]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=2)
    parser.add_argument("--num-data", type=int, default=5000)
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--init-scale", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--first-step", type=int, default=30, help="records before this step are not estimated")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--time-budget", type=float, default=60.0)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    c, h = args.features, args.hidden
    data = slt.models.tms_data(c, args.num_data, seed=1000)
    record = np.unique(np.concatenate([[0], np.geomspace(1, args.steps, 39).round()]).astype(int))
    record = record[record >= args.first_step]
    record = np.concatenate([[0], record]) if record[0] != 0 else record
    runs = []
    total = time.perf_counter()
    for seed in args.seeds:
        for linear in (False, True):
            if linear and seed != args.seeds[0]:
                continue  # one linear control is enough: it has no transitions to compare
            start = slt.models.tms_init(jax.random.key(seed), c, h, scale=args.init_scale)
            t0 = time.perf_counter()
            ckpts, steps, losses = slt.models.train_tms(
                start,
                data,
                key=jax.random.key(10_000 + seed),
                num_steps=args.steps,
                learning_rate=args.lr,
                batch_size=args.batch,
                linear=linear,
                record_steps=record,
            )
            train_s = time.perf_counter() - t0
            keep = steps >= args.first_step
            t0 = time.perf_counter()
            traj, caught = track(
                tms_linear_loss if linear else tms_loss,
                [p for p, k in zip(ckpts, keep) if k],
                steps[keep],
                data,
                jax.random.key(20_000 + seed),
                args,
            )
            llc_s = time.perf_counter() - t0
            points = [describe_point(p, c) for p, k in zip(ckpts, keep) if k]
            runs.append(
                dict(
                    seed=seed,
                    linear=linear,
                    steps=steps[keep],
                    losses=losses[keep],
                    traj=traj,
                    points=points,
                    train_s=train_s,
                    llc_s=llc_s,
                    warnings=caught,
                )
            )
            print(f"seed {seed} {'linear' if linear else 'relu'}: train {train_s:.0f} s, LLC {llc_s:.0f} s", flush=True)
            print(traj.summary(), flush=True)
    total = time.perf_counter() - total

    lines = []
    for r in runs:
        traj, losses = r["traj"], r["losses"]
        name = f"seed {r['seed']}, {'linear control' if r['linear'] else 'ReLU'}"
        lines.append(f"### {name}\n")
        lines.append(
            f"{r['traj'].auto.describe()}; training {r['train_s']:.0f} s, LLC of {len(traj)} records "
            f"{r['llc_s']:.0f} s\n"
        )
        lines.append(
            "| plateau (steps) | records | loss | point | λ̂ (mean over the plateau's records) | k-gon theory λ |"
        )
        lines.append("|---|---|---|---|---|---|")
        for i, j in plateaus(losses, 0):
            k, sigma, label = r["points"][j]
            theory = "—"
            if not r["linear"] and 5 <= k <= 8 and sigma <= c - k:
                theory = f"{float(kgon_llc(k, sigma)[0]):g}"
            lam = traj.llc_mean[i : j + 1]
            lines.append(
                f"| {r['steps'][i]}–{r['steps'][j]} | {j - i + 1} | {losses[j]:.4f} | "
                f"{'linear' if r['linear'] else label} | {lam.mean():.2f} (range {lam.min():.2f}–{lam.max():.2f}) "
                f"| {theory} |"
            )
        rho = spearman(losses, traj.llc_mean)
        lines.append(
            f"\nSpearman ρ(loss, λ̂) over all {len(traj)} records: {rho:+.2f}; "
            f"{int(traj.failing.sum())} records fail a health check"
            + (f" (steps {', '.join(str(s) for s in traj.steps[traj.failing])})" if traj.failing.any() else "")
            + ".\n"
        )
        r["rho"] = rho

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 1, figsize=(7, 2.6 * len(runs)), sharex=True, constrained_layout=True)
    for ax, r in zip(np.atleast_1d(axes), runs):
        traj = r["traj"]
        ax.errorbar(traj.steps, traj.llc_mean, 2 * traj.llc_mcse, marker="o", ms=3, color="tab:blue")
        if traj.failing.any():
            ax.plot(traj.steps[traj.failing], traj.llc_mean[traj.failing], "x", color="tab:red", ms=7)
        ax.set_ylabel("λ̂", color="tab:blue")
        ax.set_xscale("log")
        twin = ax.twinx()
        twin.semilogy(r["steps"], r["losses"], color="tab:gray", lw=1.2)
        twin.set_ylabel("loss", color="tab:gray")
        ax.set_title(
            f"seed {r['seed']}, {'linear control' if r['linear'] else 'ReLU'}: ρ(loss, λ̂) = {r['rho']:+.2f}", fontsize=9
        )
    np.atleast_1d(axes)[-1].set_xlabel("training step")
    FIGURES.mkdir(exist_ok=True)
    fig.savefig(FIGURES / "tms_training.png", dpi=110)

    text = (
        f"Run {datetime.date.today()} on {platform.machine()} ({jax.default_backend()}, JAX {jax.__version__}), "
        f"{total:.0f} s: `python benchmarks/tms_training.py{' --write' if args.write else ''}`. c = {c} features, "
        f"h = {h} hidden, n = {args.num_data}, Adam lr {args.lr:g}, batch {args.batch}, {args.steps} steps from "
        f"W ~ N(0, {args.init_scale:g}²), b = 0; records log-spaced from step {args.first_step}; LLC: "
        f"`llc_trajectory(step_size='auto', localization=1)`, chosen once at the last record. A plateau is a run "
        f"of records whose loss changes by less than {PLATEAU_CHANGE:.0%} from one record to the next; its point is "
        f"read at its last record (features with ‖W_i‖ > {LIVE_NORM} live). Figure: "
        "`benchmarks/figures/tms_training.png`.\n\n" + "\n".join(lines)
    )
    print(text)
    if args.write:
        write_section("The toy model of superposition over training (issue #13)", text)


if __name__ == "__main__":
    main()
