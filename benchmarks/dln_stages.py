"""Stagewise development of a deep linear network: loss plateaus, LLC stages and essential dynamics.

A two-layer linear network x ↦ W₂W₁x (widths 8-4-8) trained by full-batch gradient descent from a small
initialization learns the teacher's singular values (5, 2.5, 1.25) one at a time ("saddle to saddle"): the
training loss has a plateau at each saddle (rank 0, 1, 2 learned) and a final one at the minimum (rank 3).
During training an :class:`slt.callbacks.LLCTracker` estimates the LLC and records the network's outputs
on a fixed probe set every ``--every`` steps. The script then

- finds the *true* plateaus from the per-step training loss (runs of at least ``--min-plateau`` steps in
  which the loss changes by less than ``--plateau-tol`` relative per step),
- runs :func:`slt.dynamics.detect_stages` on the (tracked) loss curve and on the LLC curve,
- compares the LLC averaged over each plateau with Aoyagi's λ for the rank learned so far,
- runs :func:`slt.dynamics.essential_dynamics` + :func:`slt.dynamics.lissajous_diagnostic` on the probe
  outputs, and on a Gaussian random walk of the same length and dimension (the control),

prints the tables and, with ``--write``, records them in benchmarks/RESULTS.md under
``## Stagewise development: DLN``; the figure goes to benchmarks/figures/dln_stages.png.

Localization. The plateaus are saddles. Near the rank-k saddle the loss has negative curvature of size ≈ the
next unlearned singular value s_{k+1} (times the hidden-direction multiplicity), so the localized SGLD
potential nβ L(w) + γ/2 |w - w*|² is only confining when γ > nβ s_{k+1}; with nβ = n/log n ≈ 1086 and
s₁ = 5 that is γ > 5.4e3. With γ = 1e3 the chains roll off the saddle and λ̂ is hugely negative; the default
γ = 1e4 confines every saddle. The price: a strong γ also shrinks the contribution of the well-determined
directions (a quadratic direction of curvature h contributes nβh / (2(nβh + γ)) instead of 1/2), so λ̂ at a
plateau is far *below* Aoyagi's λ. The ordering (λ̂ rises stage by stage) is what is being tested, not the
values.

    python benchmarks/dln_stages.py            # print
    python benchmarks/dln_stages.py --write    # and record in RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import slt
from slt.callbacks import LLCTracker
from slt.models.dln import dln_forward, dln_loss

try:
    from benchmarks._results import write_section
except ImportError:  # run as a script from benchmarks/
    from _results import write_section

FIGURE = pathlib.Path(__file__).with_name("figures") / "dln_stages.png"
HEADING = "Stagewise development: DLN"


# --------------------------------------------------------------------------------------------- the problem
def make_problem(widths, singular_values, *, num_data, init_scale, seed):
    """Teacher W = U diag(s) Vᵀ, data x ~ N(0, I), y = Wx + N(0, I), and a small random initialization."""
    rng = np.random.default_rng(seed)
    r = len(singular_values)
    u = np.linalg.qr(rng.standard_normal((widths[-1], r)))[0]
    v = np.linalg.qr(rng.standard_normal((widths[0], r)))[0]
    teacher = u @ np.diag(singular_values) @ v.T
    x = rng.standard_normal((num_data, widths[0]))
    y = x @ teacher.T + rng.standard_normal((num_data, widths[-1]))
    data = (jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    init = [
        jnp.asarray(init_scale * rng.standard_normal((widths[i + 1], widths[i])), jnp.float32)
        for i in range(len(widths) - 1)
    ]
    probe = jnp.asarray(rng.standard_normal((16, widths[0])), jnp.float32)
    return data, init, probe


def train(init, data, *, lr, num_steps, tracker):
    """Full-batch gradient descent; the tracker is called at every step. Returns the per-step loss."""

    @jax.jit
    def step(params):
        loss, grads = jax.value_and_grad(dln_loss)(params, data)
        return [w - lr * g for w, g in zip(params, grads)], loss

    params, losses = init, []
    for t in range(num_steps + 1):
        tracker(t, params)
        if t < num_steps:
            params, loss = step(params)
            losses.append(float(loss))
    losses.append(float(dln_loss(params, data)))
    return params, np.array(losses)


def true_plateaus(loss, *, tol, min_length):
    """Maximal runs of ≥ ``min_length`` steps with |L_{t+1} - L_t| / L_t < ``tol``: (start, end, level)."""
    flat = np.abs(np.diff(loss)) / np.abs(loss[:-1]) < tol
    runs, start = [], None
    for t, f in enumerate(np.append(flat, False)):
        if f and start is None:
            start = t
        elif not f and start is not None:
            if t - start >= min_length:
                runs.append((start, t, float(np.median(loss[start : t + 1]))))
            start = None
    return runs


def random_walk(num_steps, dim, seed):
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.standard_normal((num_steps, dim)), axis=0)


# -------------------------------------------------------------------------------------------- the analysis
def plateau_llc(steps, llc, plateaus):
    """Mean and spread of λ̂ over the records in the middle half of each plateau (away from its ends,
    where the escape from the saddle has already begun)."""
    rows = []
    for start, end, _ in plateaus:
        lo, hi = start + 0.25 * (end - start), end - 0.25 * (end - start)
        sel = (steps >= lo) & (steps <= hi)
        vals = llc[sel]
        rows.append(
            (float(np.mean(vals)), float(np.std(vals)), int(sel.sum()))
            if sel.any()
            else (float("nan"), float("nan"), 0)
        )
    return rows


def overlaps(stage, plateau):
    (s0, s1), (p0, p1) = stage, plateau
    return max(0.0, min(s1, p1) - max(s0, p0)) / max(p1 - p0, 1e-12)


def run(args) -> dict:
    widths = [int(w) for w in args.widths.split(",")]
    svals = [float(s) for s in args.singular_values.split(",")]
    data, init, probe = make_problem(widths, svals, num_data=args.num_data, init_scale=args.init_scale, seed=args.seed)
    tracker = LLCTracker(
        dln_loss,
        data,
        key=jax.random.key(args.seed + 1),
        step_size=args.step_size,
        every=args.every,
        probe=probe,
        output_fn=dln_forward,
        num_chains=args.num_chains,
        num_draws=args.num_draws,
        num_burnin=args.num_burnin,
        batch_size=args.batch_size,
        localization=args.localization,
    )
    t0 = time.perf_counter()
    _, loss = train(init, data, lr=args.lr, num_steps=args.num_steps, tracker=tracker)
    t_track = time.perf_counter() - t0

    steps, llc, llc_std = np.asarray(tracker.steps), tracker.llc_mean, tracker.llc_std
    plateaus = true_plateaus(loss, tol=args.plateau_tol, min_length=args.min_plateau)
    lam = [float(slt.theory.dln(widths, k)[0]) for k in range(len(plateaus))]
    per_plateau = plateau_llc(steps, llc, plateaus)

    t0 = time.perf_counter()
    dyn = analyse_dynamics(steps, tracker.train_loss, llc, tracker.outputs(), seed=args.seed, loss=loss)
    t_dyn = time.perf_counter() - t0
    return dict(
        widths=widths,
        svals=svals,
        loss=loss,
        steps=steps,
        llc=llc,
        llc_std=llc_std,
        tracked_loss=tracker.train_loss,
        plateaus=plateaus,
        lam=lam,
        per_plateau=per_plateau,
        t_track=t_track,
        t_dyn=t_dyn,
        num_records=len(steps),
        **dyn,
    )


def analyse_dynamics(steps, tracked_loss, llc, outputs, *, seed, loss=None, loss_smoothing=10.0):
    """Stage detection on the loss and LLC curves; essential dynamics of the probe outputs and of a
    random-walk control of the same length and dimension."""
    from slt.dynamics import detect_stages, essential_dynamics, lissajous_diagnostic

    # the per-step log-loss with a 10-step smoother resolves every plateau; with the default smoothing on the
    # tracked (every-k) loss the short rank-1 plateau is merged into the falls around it (reported as well)
    loss_default = detect_stages(tracked_loss, steps)
    loss_stages = detect_stages(np.log(loss), smoothing=loss_smoothing) if loss is not None else loss_default
    llc_stages = detect_stages(llc, steps)
    flat = outputs.reshape(len(outputs), -1)
    ed = essential_dynamics(flat, steps=steps)
    verdict = lissajous_diagnostic(flat, seed=seed)
    walk = random_walk(len(flat), flat.shape[1], seed)
    ed_walk = essential_dynamics(walk, steps=steps)
    verdict_walk = lissajous_diagnostic(walk, seed=seed)
    return dict(
        loss_stages=loss_stages,
        loss_default=loss_default,
        llc_stages=llc_stages,
        ed=ed,
        verdict=verdict,
        ed_walk=ed_walk,
        verdict_walk=verdict_walk,
    )


# ------------------------------------------------------------------------------------------------ reporting
def stage_table(res) -> str:
    """Detected loss stages against the true plateaus (a plateau is matched by the detected plateau stage
    that covers most of it)."""
    lines = ["| detected loss stage | kind | true plateau it matches (steps, level) | coverage |", "|---|---|---|---|"]
    for start, end, kind in res["loss_stages"].stages:
        best, cov = None, 0.0
        for k, (p0, p1, _level) in enumerate(res["plateaus"]):
            c = overlaps((start, end), (p0, p1))
            if c > cov:
                best, cov = k, c
        match = (
            (f"rank {best}: {res['plateaus'][best][0]}–{res['plateaus'][best][1]}, L = {res['plateaus'][best][2]:.3f}")
            if (kind == "plateau" and best is not None)
            else "—"
        )
        lines.append(
            f"| {start:g}–{end:g} | {kind} | {match} | {cov:.0%} |"
            if kind == "plateau" and best is not None
            else f"| {start:g}–{end:g} | {kind} | — | — |"
        )
    return "\n".join(lines)


def plateau_table(res) -> str:
    lines = [
        "| plateau (rank learned) | steps | loss level | λ̂ (mean ± sd over records) | records | Aoyagi λ | λ̂ / λ |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, ((p0, p1, level), (m, s, c), lam) in enumerate(zip(res["plateaus"], res["per_plateau"], res["lam"])):
        lines.append(f"| {k} | {p0}–{p1} | {level:.3f} | {m:.2f} ± {s:.2f} | {c} | {lam:g} | {m / lam:+.2f} |")
    return "\n".join(lines)


def summary(res) -> dict:
    plateaus = res["plateaus"]
    loss_kinds = [k for *_, k in res["loss_stages"].stages]
    llc_kinds = [k for *_, k in res["llc_stages"].stages]
    means = [m for m, _, _ in res["per_plateau"]]
    return dict(
        num_svals=len(res["svals"]),
        num_true_plateaus=len(plateaus),
        num_drops=len(plateaus) - 1,
        loss_plateaus=loss_kinds.count("plateau"),
        loss_falling=loss_kinds.count("falling"),
        llc_stages=len(llc_kinds),
        llc_boundaries=list(res["llc_stages"].boundaries),
        loss_boundaries=list(res["loss_stages"].boundaries),
        increasing=bool(np.all(np.diff(means) > 0)),
        llc_start=float(res["llc"][0]),
        llc_end=float(res["llc"][-1]),
    )


def report(res, args) -> str:
    s = summary(res)
    out = [
        f"Widths {'-'.join(map(str, res['widths']))}, teacher singular values {res['svals']}, n = {args.num_data}, "
        f"x ~ N(0, I), y = Wx + N(0, I); init {args.init_scale:g}·N(0, 1); full-batch GD, lr {args.lr:g}, "
        f"{args.num_steps} steps. `LLCTracker` every {args.every} steps ({res['num_records']} records): SGLD "
        f"ε = {args.step_size:g}, nβ = n/log n, γ = {args.localization:g}, batch {args.batch_size}, "
        f"{args.num_chains} chains × {args.num_draws} draws after {args.num_burnin} burn-in. True plateaus: runs "
        f"of ≥ {args.min_plateau} steps with |ΔL|/L < {args.plateau_tol:g} per step.",
        "",
        "**Detected loss stages** (`detect_stages(np.log(loss), smoothing=10)` on the per-step training loss) "
        "against the true plateaus:",
        "",
        stage_table(res),
        "",
        f"Loss boundaries: {', '.join(f'{b:g}' for b in s['loss_boundaries'])}. With the default settings on the "
        f"tracked loss (one point per {args.every} steps) the short rank-1 plateau is not resolved: "
        f"{', '.join(f'{a:g}–{b:g} {k}' for a, b, k in res['loss_default'].stages)}. LLC-curve boundaries "
        "(default settings): "
        f"{', '.join(f'{b:g}' for b in s['llc_boundaries'])} ({s['llc_stages']} LLC stages: "
        f"{', '.join(f'{a:g}–{b:g} {k}' for a, b, k in res['llc_stages'].stages)}).",
        "",
        "**LLC at each plateau** (records in the middle half of the plateau) against Aoyagi's λ for the rank "
        "learned so far:",
        "",
        plateau_table(res),
        "",
        f"- singular values in the teacher: {s['num_svals']}; loss drops between true plateaus: {s['num_drops']}; "
        f"falling stages detected on the loss: {s['loss_falling']}; plateau stages detected: {s['loss_plateaus']} "
        f"(true: {s['num_true_plateaus']}).",
        f"- λ̂ at the plateaus increases stage by stage: {'yes' if s['increasing'] else 'NO'}; λ̂ at the last "
        f"record {s['llc_end']:.2f} vs at the first {s['llc_start']:.2f}.",
        f"- Lissajous diagnostic, DLN probe outputs: {verdict_text(res['verdict'])}",
        f"- Lissajous diagnostic, Gaussian random walk ({res['num_records']} steps, same dimension): "
        f"{verdict_text(res['verdict_walk'])}",
        f"- time: training + tracking {res['t_track']:.1f} s, stage detection + essential dynamics "
        f"{res['t_dyn']:.2f} s.",
        "",
        "Between plateaus w_t is not a critical point: the loss gradient there is far larger than the SGLD "
        "noise, the chains drift downhill and λ̂ dips strongly negative (down to "
        f"{float(np.min(res['llc'])):.0f}); those records estimate nothing and only mark the transitions. At "
        "the plateaus λ̂ is positive (except at the rank-0 saddle w = 0, where the ± curvature pairs of the "
        "bilinear loss make the localized estimate slightly negative) and well below λ: the strong γ needed to "
        "hold the chains on a saddle also truncates every direction's contribution. The LLC curve's own "
        "stages are the dips: each transition gives a falling stage into the dip and a rising one out of it, "
        "so the fall-to-rise turning points of λ̂ sit at the loss drops; the detected LLC plateaus lie inside "
        "the loss plateaus, while the shorter plateaus are absorbed into the dips' flanks. "
        "The verdict is the persistence test's (the default): the DLN's three fast transitions between slow "
        "plateaus are the unequal-speed case it was built for; the Lissajous statistic on the same sign flips "
        f"gives p = {res['verdict'].lissajous_p_value:.3f}.",
    ]
    return "\n".join(out)


def verdict_text(v) -> str:
    return (
        f"{'random-walk-like' if v.random_walk_like else 'NOT random-walk-like'} (p = {v.p_value:.3f}, "
        f"statistic {v.statistic:.2f} vs threshold {v.threshold:.2f} at α = {v.alpha:g}; PC explained-variance "
        f"ratios {', '.join(f'{r:.3f}' for r in v.explained_variance_ratio[:3])} vs random-walk "
        f"{', '.join(f'{r:.3f}' for r in v.null_explained_variance_ratio[:3])})"
    )


def pcs(ed):
    """(T, 2) PC1/PC2 coordinates of an essential-dynamics result."""
    return np.asarray(ed.components)[:, :2]


def figure(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(12, 6.5), constrained_layout=True)
    grid = fig.add_gridspec(2, 3)
    ax_loss, ax_llc = fig.add_subplot(grid[0, :2]), fig.add_subplot(grid[1, :2])
    ax_ed, ax_rw = fig.add_subplot(grid[0, 2]), fig.add_subplot(grid[1, 2])

    t = np.arange(len(res["loss"]))
    ax_loss.semilogy(t, res["loss"], color="k", lw=1.2, label="training loss $L_n(w_t)$")
    for k, (p0, p1, level) in enumerate(res["plateaus"]):
        ax_loss.axvspan(p0, p1, color="tab:green", alpha=0.15, lw=0, label="true plateaus" if k == 0 else None)
        ax_loss.text((p0 + p1) / 2, level * 1.08, f"rank {k}", ha="center", fontsize=8)
    for k, b in enumerate(res["loss_stages"].boundaries):
        ax_loss.axvline(b, color="tab:orange", ls=":", lw=1.2, label="loss-stage boundaries" if k == 0 else None)
    ax_loss.set_ylim(top=res["loss"].max() * 1.3)
    ax_loss.set_ylabel("loss")
    ax_loss.legend(fontsize=8, loc="upper right")
    ax_loss.set_title("DLN 8-4-8, teacher singular values " + ", ".join(f"{s:g}" for s in res["svals"]))

    steps, llc, std = res["steps"], res["llc"], res["llc_std"]
    ax_llc.errorbar(
        steps, llc, yerr=std, color="tab:blue", marker="o", ms=3, lw=1, capsize=2, label="LLC $\\hat\\lambda$"
    )
    for k, b in enumerate(res["llc_stages"].boundaries):
        ax_llc.axvline(b, color="tab:red", ls="--", lw=1, label="LLC-stage boundaries" if k == 0 else None)
    for (p0, p1, _), (m, _, _), lam in zip(res["plateaus"], res["per_plateau"], res["lam"]):
        ax_llc.axvspan(p0, p1, color="tab:green", alpha=0.12, lw=0)
        ax_llc.hlines(m, p0, p1, color="tab:green", lw=2)
        ax_llc.text((p0 + p1) / 2, m + 0.8, f"$\\hat\\lambda$={m:.1f}\n(λ={lam:g})", ha="center", fontsize=8)
    top = max(np.nanmax([m for m, _, _ in res["per_plateau"]]) + 4, 5)
    ax_llc.set_ylim(-8, top)
    ax_llc.set_xlabel("training step")
    ax_llc.set_ylabel("LLC $\\hat\\lambda$ (clipped: transitions dip far below)")
    ax_llc.legend(fontsize=8, loc="lower right")

    for ax, ed, verdict, title in (
        (ax_ed, res["ed"], res["verdict"], "DLN probe outputs"),
        (ax_rw, res["ed_walk"], res["verdict_walk"], "random-walk control"),
    ):
        xy = pcs(ed)
        ax.plot(xy[:, 0], xy[:, 1], color="0.6", lw=0.8)
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=np.arange(len(xy)), cmap="viridis", s=12, zorder=3)
        ax.set_xlabel("PC1")
        ax.set_ylabel("PC2")
        ax.set_title(f"{title}\n{short_verdict(verdict)}", fontsize=9)
    fig.colorbar(sc, ax=[ax_ed, ax_rw], label="record index", shrink=0.6)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def short_verdict(v) -> str:
    return f"{'random-walk-like' if v.random_walk_like else 'not random-walk-like'} (p = {v.p_value:.3f})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="8,4,8")
    parser.add_argument("--singular-values", default="5,2.5,1.25")
    parser.add_argument("--num-data", type=int, default=10_000)
    parser.add_argument("--init-scale", type=float, default=1e-6)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--num-steps", type=int, default=1600)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--step-size", type=float, default=1e-5)
    parser.add_argument("--localization", type=float, default=1e4)
    parser.add_argument("--num-chains", type=int, default=4)
    parser.add_argument("--num-draws", type=int, default=1000)
    parser.add_argument("--num-burnin", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--plateau-tol", type=float, default=3e-5)
    parser.add_argument("--min-plateau", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-figure", action="store_true")
    parser.add_argument("--write", action="store_true", help="record the results in benchmarks/RESULTS.md")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    res = run(args)
    if not args.no_figure:
        figure(res, FIGURE)
    total = time.perf_counter() - start
    text = report(res, args)
    print(text)
    print(f"total {total:.0f} s" + ("" if args.no_figure else f"; figure: {FIGURE}"))
    if args.write:
        command = "python " + " ".join(["benchmarks/dln_stages.py", *sys.argv[1:]])
        body = "\n".join(
            [
                f"Run {datetime.date.today()} on {platform.machine()} CPU ({jax.devices()[0].platform}, JAX "
                f"{jax.__version__}), total {total:.0f} s: `{command}`",
                "",
                text,
                "",
                "![DLN stages](figures/dln_stages.png)",
            ]
        )
        write_section(HEADING, body)
    return res


if __name__ == "__main__":
    main()
