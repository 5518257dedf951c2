"""The toy model of superposition over training: loss and LLC through the k-gon transitions (issue #13).

Chen, Lau, Mendel, Wei, Murfet (arXiv 2310.06301) report that SGD on the TMS (c = 6 features, 2 hidden dims)
moves between k-gon critical points: at each transition the loss drops and the LLC rises, an "inverse
relationship between loss and LLC over training". The linear model W^T W x + b (no ReLU) is the control where
"you genuinely don't see superposition": it can only keep a 2-dimensional subspace of the features.

Here, for a few seeds: train with Adam (``slt.models.train_tms``; the loss is recorded on a dense log-spaced grid of
steps), estimate the LLC at ``--records`` log-spaced checkpoints with ``slt.dynamics.llc_trajectory(step_size="auto",
localization=...)`` (with ``localization="auto"`` γ is chosen by the ladder at the reference checkpoint, the last,
together with ε, nβ = n/log n and the run length sized for ``--precision``, and all are kept for every record),
and report

* the plateaus of the dense loss curve (runs where the log-log slope |Δlog L / Δlog t| stays below
  ``PLATEAU_SLOPE`` over at least a factor ``PLATEAU_SPAN`` in steps) with their loss, the point there (features with
  ‖W_i‖ > 0.5 live; positive dead biases) and the LLC at the plateau's last record (MCSE, R-hat, ESS), beside the
  k-gon theory where it applies (``slt.models.tms.kgon_llc``: λ = (3(k + σ) − 1)/2 for k ≥ 5, at the k-gon critical
  point: live norms and biases within ``KGON_TOL`` of the symmetric k-gon's);
* each plateau's last checkpoint on its own (``estimate_llc(step_size="auto", localization="auto")``: is there a γ on
  the ladder at which the chains stay near it, i.e. is it a local minimum at some scale, and what λ̂ there);
* Spearman's ρ between loss and LLC over the records from the first plateau the records see (the claim: negative),
  over all of them and over those that pass every health check;
* each record's health (which checks fail, by how much);
* the linear control (seed 0), with the same settings; its population minimum set is 7-dimensional (PCA keeps any
  2-plane of the 5-dimensional top eigenspace of the input covariance, times the O(2) rotation), so λ = (18 − 7)/2
  = 5.5 for the population loss; on a data set the eigenspace splits by O(n^-1/2) and the minimum is regular up to
  the rotation (λ = 8.5 as n·β → ∞ on fixed data).

    python benchmarks/tms_training.py            # prints the tables, writes benchmarks/figures/tms_training.png
    python benchmarks/tms_training.py --write    # and the section of benchmarks/RESULTS.md

~30 min on a loaded 2-core CPU (3 ReLU seeds and the linear control). ``--cache FILE`` keeps the runs, so the
tables and the figure can be redone without sampling again.
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import pickle
import platform
import re
import sys
import time

import jax
import numpy as np

import slt
from slt.models.tms import kgon_llc, kgon_radius_and_bias, tms_linear_loss, tms_loss

try:
    from benchmarks._results import write_section
except ImportError:  # run as a script
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from _results import write_section

FIGURES = pathlib.Path(__file__).with_name("figures")
HEADING = "The toy model of superposition over training (issue #13)"
LIVE_NORM = 0.5  # a feature with ‖W_i‖ above this is represented
PLATEAU_SLOPE = 0.1  # |Δlog L / Δlog t| below this: the loss is on a plateau
PLATEAU_SPAN = 1.3  # a plateau lasts at least this factor in steps
LLC_FLOOR = -12.0  # the figure shows λ̂ below this at the floor
KGON_TOL = 0.05  # at the k-gon critical point: live ‖W_i‖ within 5% of l(k), live biases within 0.05 of b*(k)


def spearman(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    if a.size < 3:
        return float("nan")
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def describe_point(params, num_features: int, linear: bool = False) -> tuple[int, int, str, bool]:
    """(k live features, σ positive dead biases, a label, whether it is the k-gon critical point of the theory)."""
    w, b = np.asarray(params["W"]), np.asarray(params["b"])
    norms = np.linalg.norm(w, axis=0)
    live = norms > LIVE_NORM
    k, sigma = int(live.sum()), int(((~live) & (b > 0)).sum())
    if linear:
        return k, 0, f"rank-2 linear, {k} features with ‖W_i‖ > {LIVE_NORM}", False
    at_kgon = False
    if 5 <= k <= 8:
        radius, bias = kgon_radius_and_bias(k, num_features)
        at_kgon = bool(
            np.all(np.abs(norms[live] / radius - 1) < KGON_TOL)
            and np.all(np.abs(b[live] - bias) < KGON_TOL)
            and np.all(norms[~live] < 0.1)
        )
    label = f"{k}-gon" + (f" + {sigma} positive dead bias" if sigma else "")
    if 5 <= k <= 8 and not at_kgon:
        label += " (not at the k-gon critical point)"
    return k, sigma, label, at_kgon


def plateaus(steps: np.ndarray, losses: np.ndarray, dense: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs [i, j] (indices into ``steps``) of the loss curve on the ``dense`` steps (> 0) where every
    interval's |Δlog L / Δlog t| is below PLATEAU_SLOPE, lasting at least a factor PLATEAU_SPAN in steps."""
    on = np.flatnonzero(np.isin(steps, dense) & (steps > 0))
    t, loss = np.asarray(steps, float)[on], np.asarray(losses, float)[on]
    flat = np.abs(np.diff(np.log(loss))) / np.diff(np.log(t)) < PLATEAU_SLOPE
    runs, i = [], 0
    while i < flat.size:
        if not flat[i]:
            i += 1
            continue
        j = i
        while j + 1 < flat.size and flat[j + 1]:
            j += 1
        if t[j + 1] / t[i] >= PLATEAU_SPAN:
            runs.append((int(on[i]), int(on[j + 1])))
        i = j + 1
    return runs


def plateau_check(loss_fn, params, data, key, args) -> dict:
    """An estimate at one plateau's checkpoint with its own ``localization="auto"`` and ``step_size="auto"``: is
    there a γ on the ladder at which the chains stay near it (a local minimum at that scale), and what λ̂ there?"""
    res = slt.estimate_llc(
        loss_fn,
        params,
        data,
        key=key,
        step_size="auto",
        localization="auto",
        num_chains=args.chains,
        precision=args.precision,
        time_budget=args.time_budget,
    )
    choice = res.localization_choice
    return dict(
        gamma=float(res.localization),
        step_size=float(res.step_size),
        llc=float(res.llc_mean),
        mcse=float(res.llc_mcse),
        rhat=float(res.rhat),
        ess=float(res.ess),
        warnings=list(res.warnings),
        largest_local=bool(choice.local[0]),
        ladder=choice.table(),
        note=choice.note,
    )


def health_tags(warnings_: list[str]) -> str:
    """The failing checks of one record, short, with their numbers."""
    tags = []
    below = [w for w in warnings_ if "fell below the loss at w*" in w]
    if below:
        tags.append(f"loss below L_n(w*) in {len(below)} chains")
    for w in warnings_:
        if m := re.search(r"estimate is negative \(([-\d.e+]+)\)", w):
            tags.append(f"λ̂ < 0 ({m.group(1)})")
        elif m := re.search(r"exceeds d/2 = ([\d.]+)", w):
            tags.append(f"λ̂ > d/2 = {m.group(1)}")
        elif m := re.search(r"drifting .*z = ([-\d.]+)", w):
            tags.append(f"drift z = {m.group(1)}")
        elif m := re.search(r"R-hat of the λ̂ trace is ([\d.]+)", w):
            tags.append(f"R-hat {m.group(1)}")
        elif m := re.search(r"bulk ESS is (\d+)", w):
            tags.append(f"ESS {m.group(1)}")
        elif "diverged" in w:
            tags.append("diverged")
    return "; ".join(tags) if tags else ("ok" if not warnings_ else "; ".join(warnings_))


def run_one(seed, linear, data, dense, record, args):
    c, h = args.features, args.hidden
    start = slt.models.tms_init(jax.random.key(seed), c, h, scale=args.init_scale)
    grid = np.union1d(dense, record)
    t0 = time.perf_counter()
    ckpts, steps, losses = slt.models.train_tms(
        start,
        data,
        key=jax.random.key(10_000 + seed),
        num_steps=args.steps,
        learning_rate=args.lr,
        batch_size=args.batch,
        linear=linear,
        record_steps=grid,
    )
    train_s = time.perf_counter() - t0
    at = np.searchsorted(steps, record)
    loc = args.localization if args.localization == "auto" else float(args.localization)
    t0 = time.perf_counter()
    traj = slt.dynamics.llc_trajectory(
        tms_linear_loss if linear else tms_loss,
        [ckpts[i] for i in at],
        data,
        key=jax.random.key(20_000 + seed),
        step_size="auto",
        steps=list(record),
        localization=loc,
        num_chains=args.chains,
        precision=args.precision,
        time_budget=args.time_budget,
    )
    llc_s = time.perf_counter() - t0
    checks = {}
    t0 = time.perf_counter()
    if args.plateau_check:
        for i, j in plateaus(steps, losses, dense):
            if steps[j] >= args.first_step:
                checks[(i, j)] = plateau_check(
                    tms_linear_loss if linear else tms_loss, ckpts[j], data, jax.random.key(30_000 + seed), args
                )
                print(f"plateau {steps[i]}-{steps[j]}: {checks[(i, j)]}", flush=True)
    check_s = time.perf_counter() - t0
    name = f"seed {seed} {'linear' if linear else 'relu'}"
    print(f"{name}: train {train_s:.0f} s, LLC {llc_s:.0f} s", flush=True)
    print(traj.summary(), flush=True)
    if traj.auto.localization_choice is not None:
        print(traj.auto.localization_choice.summary(), flush=True)
    print(traj.auto.calibration.summary(), flush=True)
    return dict(
        seed=seed,
        linear=linear,
        steps=steps,
        losses=losses,
        points=[describe_point(p, c, linear) for p in ckpts],
        record=record,
        record_index=at,
        llc=traj.llc_mean,
        mcse=traj.llc_mcse,
        rhat=traj.rhat,
        ess=traj.ess,
        failing=traj.failing,
        warnings=traj.record_warnings,
        extensions=[list(getattr(r, "extensions", []) or []) for r in traj.results],
        auto=traj.auto.describe(),
        localization_table=None if traj.auto.localization_choice is None else traj.auto.localization_choice.table(),
        localization_note=None if traj.auto.localization_choice is None else traj.auto.localization_choice.note,
        gamma=traj.auto.localization,
        step_size=traj.auto.step_size,
        nbeta=traj.auto.nbeta,
        h_max=traj.auto.calibration.hessian_top,
        train_s=train_s,
        llc_s=llc_s,
        dense=dense,
        checks=checks,
        check_s=check_s,
    )


def report(r, c) -> tuple[list[str], dict]:
    """The Markdown lines of one run and its summary numbers."""
    steps, losses, rec, at = r["steps"], r["losses"], r["record"], r["record_index"]
    lam, mcse, rhat, ess, bad = r["llc"], r["mcse"], r["rhat"], r["ess"], r["failing"]
    name = f"seed {r['seed']}, {'linear control' if r['linear'] else 'ReLU'}"
    lines = [f"### {name}\n"]
    lines.append(
        f"{r['auto']} (chosen at step {rec[-1]}: nβ = {r['nbeta']:.4g}, h_max = {r['h_max']:.3g}, "
        f"γ = {r['gamma']:.4g}); training {r['train_s']:.0f} s, LLC of {len(rec)} records {r['llc_s']:.0f} s.\n"
    )
    if r["localization_table"] is not None:
        lines.append("The γ ladder at the reference checkpoint (`localization='auto'`):\n")
        lines.append("```\n" + r["localization_table"] + "\n```\n")
    lines.append(
        "| plateau (steps) | loss | point | records | λ̂ at its last record (± MCSE) | R-hat | ESS | λ̂ range over "
        "its healthy records | k-gon theory λ |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|")
    runs = plateaus(steps, losses, r["dense"])
    for i, j in runs:
        k, sigma, label, at_kgon = r["points"][j]
        theory = "—"
        if at_kgon:
            theory = f"{float(kgon_llc(k, sigma)[0]):g}"
        elif r["linear"] and abs(losses[j] / losses[-1] - 1) < 0.02:
            theory = "5.5 (population)"
        inside = np.flatnonzero((rec >= steps[i]) & (rec <= steps[j]))
        if inside.size:
            q = inside[-1]
            healthy = inside[~bad[inside]]
            rng = f"{lam[healthy].min():.2f}–{lam[healthy].max():.2f}" if healthy.size else "none healthy"
            est = (
                f"{lam[q]:.2f} ± {mcse[q]:.2f}{' (fails)' if bad[q] else ''} | {rhat[q]:.3f} | {ess[q]:.0f} | "
                f"{rng} ({healthy.size} of {inside.size})"
            )
        else:
            est = "— | — | — | —"
        lines.append(f"| {steps[i]}–{steps[j]} | {losses[j]:.4f} | {label} | {inside.size} | {est} | {theory} |")
    if r["checks"]:
        lines.append(
            "\nEach plateau's last checkpoint on its own (`estimate_llc(step_size='auto', localization='auto')`: "
            "its own γ ladder and ε):\n"
        )
        lines.append("| plateau (steps) | γ chosen | largest rung local | ε | λ̂ ± MCSE | R-hat | ESS | health |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for (i, j), ch in r["checks"].items():
            lines.append(
                f"| {steps[i]}–{steps[j]} | {ch['gamma']:.4g} | {'yes' if ch['largest_local'] else 'no'} | "
                f"{ch['step_size']:.3g} | {ch['llc']:.2f} ± {ch['mcse']:.2f} | {ch['rhat']:.3f} | {ch['ess']:.0f} | "
                f"{health_tags(ch['warnings'])} |"
            )
    first = next((i for i, j in runs if steps[j] >= rec[0]), None)
    from_step = max(rec[0], steps[first]) if first is not None else rec[0]
    window = rec >= from_step
    rec_loss = losses[at]
    rho_all = spearman(rec_loss, lam)
    rho_win = spearman(rec_loss[window], lam[window])
    ok = window & ~bad
    rho_ok = spearman(rec_loss[ok], lam[ok])
    on_last = (rec >= steps[runs[-1][0]]) & (rec <= steps[runs[-1][1]]) if runs else np.zeros(len(rec), bool)
    lines.append(
        f"\nSpearman ρ(loss, λ̂): {rho_all:+.2f} over all {len(rec)} records; {rho_win:+.2f} over the "
        f"{int(window.sum())} records from step {from_step} (the first plateau the records see); {rho_ok:+.2f} over "
        f"the {int(ok.sum())} of those that pass every health check. {int(bad.sum())} of {len(rec)} records "
        f"({bad.mean():.0%}) fail a health check"
        + (f"; on the last plateau {int(bad[on_last].sum())} of {int(on_last.sum())}.\n" if on_last.any() else ".\n")
    )
    lines.append("| step | loss | point | λ̂ ± MCSE | R-hat | ESS | health |")
    lines.append("|---|---|---|---|---|---|---|")
    for q in range(len(rec)):
        lines.append(
            f"| {rec[q]} | {rec_loss[q]:.4f} | {r['points'][at[q]][2]} | {lam[q]:.2f} ± {mcse[q]:.2f} | "
            f"{rhat[q]:.3f} | {ess[q]:.0f} | {health_tags(r['warnings'][q])} |"
        )
    lines.append("")
    return lines, dict(rho_all=rho_all, rho_win=rho_win, rho_ok=rho_ok, runs=runs, from_step=from_step)


def figure(runs, summaries, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 1, figsize=(7.5, 2.7 * len(runs)), sharex=True, constrained_layout=True)
    for ax, r, s in zip(np.atleast_1d(axes), runs, summaries):
        rec, lam, bad = r["record"], r["llc"], r["failing"]
        for i, j in s["runs"]:
            ax.axvspan(r["steps"][i], r["steps"][j], color="0.9", zorder=0)
        low = max(LLC_FLOOR, np.nanmin(lam) - 1)
        off = lam < low
        good, failed = ~bad & ~off, bad & ~off
        ax.errorbar(rec[good], lam[good], 2 * r["mcse"][good], fmt="o", ms=3, color="tab:blue", label="λ̂ ± 2 MCSE")
        if failed.any():
            ax.errorbar(
                rec[failed],
                lam[failed],
                2 * r["mcse"][failed],
                fmt="x",
                ms=7,
                mew=1.5,
                color="tab:red",
                label="fails a health check",
            )
        if off.any():
            ax.plot(rec[off], np.full(off.sum(), low), "v", color="tab:red", ms=6, label=f"λ̂ below {low:g}")
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_ylim(low - 1, max(np.nanmax(lam + 2 * r["mcse"]), 1) + 1)
        ax.set_ylabel("LLC $\\hat\\lambda$", color="tab:blue")
        ax.set_xscale("log")
        twin = ax.twinx()
        keep = r["steps"] > 0
        twin.semilogy(r["steps"][keep], r["losses"][keep], color="tab:gray", lw=1.2)
        twin.set_ylabel("training loss $L_n$", color="tab:gray")
        ax.set_title(
            f"seed {r['seed']}, {'linear control' if r['linear'] else 'ReLU'} (γ = {r['gamma']:.3g}, "
            f"ε = {r['step_size']:.2g}): ρ(loss, λ̂) = {s['rho_win']:+.2f} from step {s['from_step']}, "
            f"{bad.sum()}/{bad.size} records fail",
            fontsize=8,
        )
        ax.legend(fontsize=7, loc="lower right")
    np.atleast_1d(axes)[-1].set_xlabel("training step (plateaus of the loss shaded)")
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=2)
    parser.add_argument("--num-data", type=int, default=5000)
    parser.add_argument("--steps", type=int, default=5000, help="the k-gon sequence ends by ~1,500 steps (c = 6)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--init-scale", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--records", type=int, default=25, help="LLC records, log-spaced from --first-step")
    parser.add_argument("--first-step", type=int, default=30, help="no LLC record before this step")
    parser.add_argument("--dense", type=int, default=150, help="log-spaced steps at which the loss is recorded")
    parser.add_argument("--localization", default="auto", help="γ, or 'auto' (chosen at the last record)")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--precision", type=float, default=0.01, help="target MCSE / |λ̂| of the auto run length")
    parser.add_argument(
        "--no-plateau-check", dest="plateau_check", action="store_false", help="skip the own-γ estimate per plateau"
    )
    parser.add_argument("--time-budget", type=float, default=60.0)
    parser.add_argument("--no-linear", action="store_true")
    parser.add_argument("--cache", type=pathlib.Path, help="pickle of the runs: read if it exists, else written")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    c, h = args.features, args.hidden
    data = slt.models.tms_data(c, args.num_data, seed=1000)
    dense = np.unique(np.concatenate([[0], np.geomspace(1, args.steps, args.dense).round()]).astype(int))
    record = np.unique(np.geomspace(args.first_step, args.steps, args.records).round().astype(int))
    total = time.perf_counter()
    if args.cache is not None and args.cache.exists():
        runs, total = pickle.loads(args.cache.read_bytes())
    else:
        runs = []
        for seed in args.seeds:
            for linear in (False, True):
                if linear and (seed != args.seeds[0] or args.no_linear):
                    continue  # one linear control is enough: it has no transitions to compare
                runs.append(run_one(seed, linear, data, dense, record, args))
        total = time.perf_counter() - total
        if args.cache is not None:
            args.cache.write_bytes(pickle.dumps((runs, total)))

    lines, summaries = [], []
    for r in runs:
        more, summary = report(r, c)
        lines += more
        summaries.append(summary)
    figure(runs, summaries, FIGURES / "tms_training.png")
    overview = [
        "| run | final loss | final point | λ̂ at the last record (± MCSE, R-hat) | ρ from the first plateau "
        "(healthy records only) | records failing |",
        "|---|---|---|---|---|---|",
    ]
    for r, s in zip(runs, summaries):
        overview.append(
            f"| seed {r['seed']} {'linear' if r['linear'] else 'ReLU'} | {r['losses'][-1]:.4f} | "
            f"{r['points'][-1][2]} | {r['llc'][-1]:.2f} ± {r['mcse'][-1]:.2f} ({r['rhat'][-1]:.3f}) | "
            f"{s['rho_win']:+.2f} ({s['rho_ok']:+.2f}) | {int(r['failing'].sum())}/{r['failing'].size} |"
        )
    text = (
        f"Run {datetime.date.today()} on {platform.machine()} ({jax.default_backend()}, JAX {jax.__version__}), "
        f"{total:.0f} s: `python benchmarks/tms_training.py{' --write' if args.write else ''}`. c = {c} features, "
        f"h = {h} hidden, n = {args.num_data}, Adam lr {args.lr:g}, batch {args.batch}, {args.steps} steps from "
        f"W ~ N(0, {args.init_scale:g}²), b = 0 (the loss is flat from ~1,500 steps on in every seed; a 20,000-step "
        f"run changes nothing). Loss recorded at {len(dense)} log-spaced steps; LLC at {len(record)} log-spaced "
        f"records from step {args.first_step}, by `llc_trajectory(step_size='auto', localization="
        f"{args.localization!r}, num_chains={args.chains}, time_budget={args.time_budget:g})`: ε, γ, nβ, the "
        "warm-up and the run length chosen once at the last record and kept for every record (records that fail a "
        "check longer chains pass are continued). A plateau is a stretch of the loss curve where |Δlog L/Δlog t| < "
        f"{PLATEAU_SLOPE:g} over at least a factor {PLATEAU_SPAN:g} in steps; its point is read at its end (features "
        f"with ‖W_i‖ > {LIVE_NORM} live); the k-gon theory λ = (3(k + σ) − 1)/2 is given where the point is the "
        f"k-gon critical point (live norms and biases within {KGON_TOL:g} of the symmetric k-gon's). Figure: "
        "`benchmarks/figures/tms_training.png` (λ̂ ± 2 MCSE in blue, failing records as red crosses, loss in grey, "
        "plateaus shaded).\n\n" + "\n".join(overview) + "\n\n" + "\n".join(lines)
    )
    print(text)
    if args.write:
        write_section(HEADING, text)


if __name__ == "__main__":
    main()
