"""The random-walk test of :func:`slt.dynamics.lissajous_diagnostic`: false-positive rate and power, old vs new.

Two tests share one null ("independent increments, each symmetric about zero") and one calibration (the
same sign-flipped copies of the trajectory's increments, so both p-values are exact randomization p-values):

* ``lissajous`` (the old verdict): RMS of standardized features of the PCA picture (PC shapes against the
  random-walk cosines, the explained-variance spectrum against 6/(π²k²), the texture of the PC curves);
* ``persistence`` (the new verdict): the largest standardized multi-scale persistence of the increments'
  *directions* (cosines of the angles between increments at lags ≥ 2, summed over windows of 3 to T
  checkpoints, a variance-ratio statistic), together with the roughness (minus the lag-1 cosines).

Simulations (fresh draws; the development set that chose the statistic used seeds 1000-1005, the evaluation
here uses ``--seed``, default 2000):

* random walks, T ∈ [200, 400] checkpoints, D ∈ [500, 3000] dimensions, Gaussian, Student-t(3) and
  Student-t(2) increments;
* piecewise-linear paths through 3, 4, 5 Gaussian waypoints (inner knots uniform in the middle 80 % of the
  time span), same T and D, with noise of three kinds: ``position`` (i.i.d. per checkpoint, total s.d. a
  fraction of a segment's length), ``coordinate`` (i.i.d., s.d. *per coordinate* a fraction of a segment's
  length, the convention of tests/dynamics/test_lissajous.py: much larger in high dimension) and
  ``diffusion`` (a Gaussian random walk added to the path, its end-to-end displacement that many segment
  lengths: SGD-like noise).

And the seed's claim about PC2 (SCIENCE.md §7): on paths with stages of unequal duration, is the extremum of
PC2 closer in time to the *developmental* midpoint (where PC1 crosses the middle of its range) than to the
wall-time midpoint? Optionally (``--dln``) on the DLN training run of benchmarks/dln_stages.py.

Run: ``python benchmarks/random_walk_test.py --dln [--write]`` (about 12 minutes on two loaded cores; the
old test's PCA of every surrogate is the slow part, so it runs on a subset of each cell);
``--num-paired 30`` runs only the paired old-vs-new comparison (about 5 minutes).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import pathlib
import platform
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from slt.dynamics import lissajous_diagnostic  # noqa: E402
from slt.dynamics.lissajous import _pc2_extremum, _persistence_p_value  # noqa: E402

HEADING = "Random-walk test: false-positive rate and power (issue #13 §5), and the PC2-midpoint claim"
FIGURE = pathlib.Path(__file__).with_name("figures") / "random_walk_test.png"
LAWS = ("gauss", "t3", "t2")
NOISES = (("position", 0.0), ("position", 0.1), ("coordinate", 0.01), ("diffusion", 3.0), ("diffusion", 6.0))
WAYPOINTS = (3, 4, 5)


# ------------------------------------------------------------------------------------------ generators
def random_walk(rng, num_points, dims, law):
    shape = (num_points - 1, dims)
    inc = rng.standard_normal(shape) if law == "gauss" else rng.standard_t(int(law[1:]), shape)
    return np.concatenate([np.zeros((1, dims)), np.cumsum(inc, axis=0)])


def piecewise_linear(rng, num_points, dims, waypoints, noise_kind, noise, knots=None, lengths=None):
    """Path through ``waypoints`` Gaussian waypoints (or with given segment ``lengths``), plus noise."""
    if lengths is None:
        w = rng.standard_normal((waypoints, dims))
    else:  # orthogonal-ish random directions with the given lengths (in units of sqrt(2 D))
        steps = rng.standard_normal((waypoints - 1, dims)) * np.asarray(lengths)[:, None] * math.sqrt(2.0)
        w = np.concatenate([np.zeros((1, dims)), np.cumsum(steps, axis=0)])
    if knots is None:
        margin = num_points // 10
        inner = np.sort(rng.choice(np.arange(margin, num_points - margin), waypoints - 2, replace=False))
        knots = np.r_[0, inner, num_points - 1]
    t = np.arange(num_points)
    seg = np.clip(np.searchsorted(knots, t, side="right") - 1, 0, waypoints - 2)
    frac = (t - knots[seg]) / (knots[seg + 1] - knots[seg])
    path = w[seg] + frac[:, None] * (w[seg + 1] - w[seg])
    length = math.sqrt(np.mean(np.sum(np.diff(w, axis=0) ** 2, axis=1)))
    if noise_kind == "position":
        return path + noise * length / math.sqrt(dims) * rng.standard_normal(path.shape)
    if noise_kind == "coordinate":
        return path + noise * length * rng.standard_normal(path.shape)
    if noise_kind == "diffusion":
        return path + np.cumsum(rng.standard_normal(path.shape), axis=0) * noise * length / math.sqrt(dims * num_points)
    raise ValueError(noise_kind)


def sizes(rng):
    return int(rng.integers(200, 401)), int(rng.integers(500, 3001))


# ------------------------------------------------------------------------------------------ rates
def binom_ci(k, n, z=1.96):
    """Wilson 95 % interval."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(flags):
    k, n = int(np.sum(flags)), len(flags)
    lo, hi = binom_ci(k, n)
    return dict(k=k, n=n, rate=k / n, lo=lo, hi=hi)


def fmt(r):
    return f"{100 * r['rate']:.1f}% [{100 * r['lo']:.1f}, {100 * r['hi']:.1f}] ({r['k']}/{r['n']})"


def new_rejects(x, seed, alpha):
    return _persistence_p_value(x, seed=seed)[1] <= alpha


def both_reject(x, seed, alpha):
    res = lissajous_diagnostic(x, seed=seed, alpha=alpha)
    assert res.p_value == res.persistence_p_value
    return res.persistence_p_value <= alpha, res.lissajous_p_value <= alpha


def error_rates(args):
    rng = np.random.default_rng(args.seed)
    out = {"fpr": {}, "power": {}}
    for law in LAWS:
        new, old, old_new = [], [], []
        for i in range(args.num_walks):
            x = random_walk(rng, *sizes(rng), law)
            if i < args.num_old_walks:
                a, b = both_reject(x, i, args.alpha)
                old.append(b)
                old_new.append(a)
            new.append(new_rejects(x, i, args.alpha))
        out["fpr"][law] = dict(new=rate(new), old=rate(old))
        print(f"FPR {law}: new {fmt(rate(new))}; old {fmt(rate(old))}", flush=True)
    for waypoints in WAYPOINTS:
        for kind, noise in NOISES:
            new, old, new_sub = [], [], []
            for i in range(args.num_paths):
                x = piecewise_linear(rng, *sizes(rng), waypoints, kind, noise)
                if i < args.num_old_paths:
                    a, b = both_reject(x, i, args.alpha)
                    old.append(b)
                    new_sub.append(a)
                new.append(new_rejects(x, i, args.alpha))
            out["power"][(waypoints, kind, noise)] = dict(new=rate(new), old=rate(old), new_sub=rate(new_sub))
            print(
                f"power {waypoints} waypoints, {kind} noise {noise}: new {fmt(rate(new))}; old {fmt(rate(old))}"
                f" (new on the same subset {fmt(rate(new_sub))})",
                flush=True,
            )
    return out


def paired(args):
    """Old and new test on the same paths (and sign flips) where they disagree most: stages in diffusion."""
    rng = np.random.default_rng(args.seed + 2)
    rows = []
    for waypoints, noise in ((3, 4.0), (3, 5.0)):
        flags = []
        for i in range(args.num_paired):
            x = piecewise_linear(rng, *sizes(rng), waypoints, "diffusion", noise)
            flags.append(both_reject(x, i, args.alpha))
        flags = np.asarray(flags)
        new_only = int(np.sum(flags[:, 0] & ~flags[:, 1]))
        old_only = int(np.sum(flags[:, 1] & ~flags[:, 0]))
        d = new_only + old_only
        p = sum(math.comb(d, j) for j in range(new_only, d + 1)) / 2**d if d else 1.0
        rows.append(
            dict(
                waypoints=waypoints,
                noise=noise,
                new=rate(flags[:, 0]),
                old=rate(flags[:, 1]),
                new_only=new_only,
                old_only=old_only,
                mcnemar=p,
            )
        )
        print(
            f"paired {waypoints} waypoints, diffusion {noise}: new {fmt(rate(flags[:, 0]))}, old "
            f"{fmt(rate(flags[:, 1]))}, new only {new_only}, old only {old_only}, McNemar p {p:.3g}",
            flush=True,
        )
    lines = [
        f"Paired comparison on the same {args.num_paired} paths per row (T ∈ [200, 400], D ∈ [500, 3000], "
        "piecewise linear through 3 waypoints plus a random walk of that many segment lengths; both tests on the "
        "same sign flips, B = 199, α = 0.05; McNemar = exact one-sided sign test on the paths only one test "
        "rejects):",
        "",
        "| waypoints | diffusion | new (persistence) | old (Lissajous) | only new rejects | only old rejects "
        "| McNemar p |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['waypoints']} | {r['noise']:g} | {fmt(r['new'])} | {fmt(r['old'])} | {r['new_only']} | "
            f"{r['old_only']} | {r['mcnemar']:.3g} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ PC2 claim
def top2(x):
    xc = x - x.mean(axis=0)
    lam, u = np.linalg.eigh(xc @ xc.T)
    comps = u[:, ::-1][:, :2] * np.sqrt(np.maximum(lam[::-1][:2], 0.0))
    if comps[-1, 0] < comps[0, 0]:
        comps[:, 0] *= -1
    return comps


def midpoints(x):
    """(PC2 extremum time, developmental-midpoint time, PC2 extremum position along PC1), times in [0, 1]."""
    pcs = top2(x)
    pc1 = pcs[:, 0]
    position, t_star = _pc2_extremum(pc1, pcs[:, 1])
    mid = 0.5 * (pc1.min() + pc1.max())
    t_dev = int(np.argmax(pc1 >= mid)) / (len(pc1) - 1)  # first time PC1 reaches the middle of its range
    wall = (pc1[(len(pc1) - 1) // 2] - pc1.min()) / max(float(np.ptp(pc1)), 1e-300)  # wall-time midpoint on PC1
    return t_star, t_dev, position, wall


PC2_CASES = (
    ("2 stages, durations 0.15 : 0.85, equal lengths", (0.15,), (1.0, 1.0)),
    ("2 stages, durations 0.3 : 0.7, equal lengths", (0.3,), (1.0, 1.0)),
    ("2 stages, durations 0.7 : 0.3, equal lengths", (0.7,), (1.0, 1.0)),
    ("2 stages, durations 0.15 : 0.85, lengths 2 : 1", (0.15,), (2.0, 1.0)),
    ("2 stages, durations 0.3 : 0.7, lengths 1 : 2", (0.3,), (1.0, 2.0)),
    ("3 stages, durations 0.1 : 0.3 : 0.6, equal lengths", (0.1, 0.4), (1.0, 1.0, 1.0)),
    ("3 stages, durations 0.1 : 0.3 : 0.6, lengths 3 : 2 : 1 (decelerating)", (0.1, 0.4), (3.0, 2.0, 1.0)),
)


def pc2_claim(args):
    rng = np.random.default_rng(args.seed + 1)
    num_points, dims = 200, 1000
    rows = []
    for name, cuts, lengths in PC2_CASES:
        knots = np.r_[0, np.round(np.asarray(cuts) * (num_points - 1)).astype(int), num_points - 1]
        vals = []
        for _ in range(args.num_pc2):
            x = piecewise_linear(
                rng, num_points, dims, len(lengths) + 1, "position", 0.03, knots=knots, lengths=lengths
            )
            vals.append(midpoints(x))
        vals = np.asarray(vals)
        closer = np.abs(vals[:, 0] - vals[:, 1]) < np.abs(vals[:, 0] - 0.5)
        closer_pc1 = np.abs(vals[:, 2] - 0.5) < np.abs(vals[:, 2] - vals[:, 3])
        rows.append(
            dict(
                name=name,
                closer=rate(closer),
                closer_pc1=rate(closer_pc1),
                t_star=np.median(vals[:, 0]),
                t_dev=np.median(vals[:, 1]),
                position=np.median(vals[:, 2]),
                wall=np.median(vals[:, 3]),
                vals=vals,
            )
        )
        print(
            f"PC2 {name}: closer to developmental midpoint {fmt(rate(closer))}; median t* "
            f"{np.median(vals[:, 0]):.2f}, t_dev {np.median(vals[:, 1]):.2f}, position {np.median(vals[:, 2]):.2f}",
            flush=True,
        )
    vals = np.asarray([midpoints(random_walk(rng, num_points, dims, "gauss")) for _ in range(args.num_pc2)])
    rows.append(
        dict(
            name="Gaussian random walk (control)",
            closer=None,
            closer_pc1=None,
            t_star=np.median(vals[:, 0]),
            t_dev=np.median(vals[:, 1]),
            position=np.median(vals[:, 2]),
            wall=np.median(vals[:, 3]),
            vals=vals,
        )
    )
    return rows


def dln_run(args):
    """The DLN training run of benchmarks/dln_stages.py (default settings), its verdicts and PC2 positions."""
    import dln_stages  # noqa: PLC0415

    res = dln_stages.run(dln_stages_args())
    verdict = res["verdict"]
    pcs = np.asarray(res["ed"].components)[:, :2]
    t_star, t_dev, position, wall = midpoints_from_pcs(pcs)
    return dict(
        verdict=verdict,
        t_star=t_star,
        t_dev=t_dev,
        position=position,
        wall=wall,
        boundaries=res["loss_stages"].boundaries,
        steps=np.asarray(res["ed"].steps),
    )


def grokking_run(args):
    """The weight-decay-1 training run of benchmarks/grokking.py (its defaults: p = 23, MLP 46-128-23, AdamW lr 3e-3,
    16,000 full-batch steps), the probe logits on all p² pairs every 250 steps (65 records, no LLC), and the same
    analysis: essential dynamics (smoothing 1.5), the random-walk test, PC2's extremum and the two midpoints."""
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415
    from grokking import setup  # noqa: PLC0415

    import slt  # noqa: PLC0415

    steps, every, seed = 16_000, 250, 0
    _, test, probe, model, optimizer, train_step = setup(23, 128, 0.6, seed, 3e-3, 1.0)

    outputs, test_acc = [], []
    for step in range(steps + 1):
        if step % every == 0:
            outputs.append(np.asarray(jax.device_get(model(probe))))
            test_acc.append(float(jnp.mean(jnp.argmax(model(test[0]), axis=-1) == test[1])))
        train_step(model, optimizer)
    outputs = np.stack(outputs)
    record_steps = np.arange(0, steps + 1, every, dtype=float)
    ed = slt.dynamics.essential_dynamics(outputs, n_components=3, smoothing=1.5, steps=record_steps)
    verdict = slt.dynamics.lissajous_diagnostic(outputs, num_surrogates=199, seed=seed)
    t_star, t_dev, position, wall = midpoints_from_pcs(np.asarray(ed.components)[:, :2])
    half = record_steps[int(np.argmax(np.asarray(test_acc) >= 0.5 * max(test_acc)))]
    return dict(
        verdict=verdict, t_star=t_star, t_dev=t_dev, position=position, wall=wall, steps=record_steps, half=half
    )


def dln_stages_args():
    """dln_stages.py's command-line defaults."""
    import argparse as _argparse  # noqa: PLC0415

    defaults = dict(
        widths="8,4,8",
        singular_values="5,2.5,1.25",
        num_data=10_000,
        init_scale=1e-6,
        lr=0.01,
        num_steps=1600,
        every=25,
        step_size=1e-5,
        localization=1e4,
        num_chains=4,
        num_draws=1000,
        num_burnin=300,
        batch_size=100,
        plateau_tol=3e-5,
        min_plateau=50,
        seed=0,
    )
    return _argparse.Namespace(**defaults)


def midpoints_from_pcs(pcs):
    pc1 = pcs[:, 0] if pcs[-1, 0] >= pcs[0, 0] else -pcs[:, 0]
    position, t_star = _pc2_extremum(pc1, pcs[:, 1])
    mid = 0.5 * (pc1.min() + pc1.max())
    wall = (pc1[(len(pc1) - 1) // 2] - pc1.min()) / max(float(np.ptp(pc1)), 1e-300)
    return t_star, int(np.argmax(pc1 >= mid)) / (len(pc1) - 1), position, wall


# ------------------------------------------------------------------------------------------ report
def run_lines(dln, grok) -> list[str]:
    """The paragraphs on the DLN and grokking training runs (each None when not run)."""
    lines = []
    if dln is not None:
        v = dln["verdict"]
        lines += [
            "",
            f"**DLN training run** (benchmarks/dln_stages.py defaults, {len(dln['steps'])} checkpoints of the probe "
            f"outputs): new test p = {v.persistence_p_value:.3f} (statistic {v.persistence_statistic:.2f}), "
            f"old test p = {v.lissajous_p_value:.3f}; verdict "
            f"{'random-walk-like' if v.random_walk_like else 'NOT random-walk-like'}. "
            f"PC2's extremum at t* = {dln['t_star']:.2f} of the time span, position {dln['position']:.2f} along PC1; "
            f"developmental midpoint t_dev = {dln['t_dev']:.2f}, wall-time midpoint at {dln['wall']:.2f} along PC1; "
            "loss-stage boundaries at steps "
            f"{', '.join(f'{b:g}' for b in dln['boundaries'])} of {dln['steps'][-1]:g}.",
        ]
    if grok is not None:
        v = grok["verdict"]
        lines += [
            "",
            f"**Grokking training run** (benchmarks/grokking.py's weight-decay-1 run, {len(grok['steps'])} records "
            f"of the logits on all pairs): new test p = {v.persistence_p_value:.3f} (statistic "
            f"{v.persistence_statistic:.2f}), old test p = {v.lissajous_p_value:.3f}; verdict "
            f"{'random-walk-like' if v.random_walk_like else 'NOT random-walk-like'}. "
            f"PC2's extremum at t* = {grok['t_star']:.2f} of the time span, position {grok['position']:.2f} along "
            f"PC1; developmental midpoint t_dev = {grok['t_dev']:.2f}, wall-time midpoint at {grok['wall']:.2f} "
            f"along PC1; the test accuracy reaches half its maximum at step {grok['half']:g} of "
            f"{grok['steps'][-1]:g} ({grok['half'] / grok['steps'][-1]:.2f} of the span).",
        ]
    return lines


def report(rates, pc2, dln, args, grok=None):
    lines = [
        f'At α = {args.alpha}, {args.num_surrogates_note}; 95 % Wilson intervals. New = `test="persistence"` '
        '(the verdict now), old = `test="lissajous"` (the verdict before; still computed, '
        "`LissajousResult.lissajous_p_value`). Old-test rates come from the first "
        f"{args.num_old_walks} walks / {args.num_old_paths} paths of each cell (its PCA of every surrogate "
        "costs seconds per trajectory); the new test's rate on that same subset is shown beside it.",
        "",
        "**False-positive rate** (random walks judged not random-walk-like), T ∈ [200, 400], D ∈ [500, 3000]:",
        "",
        "| increments | new (persistence) | old (Lissajous) |",
        "|---|---|---|",
    ]
    for law, r in rates["fpr"].items():
        name = {"gauss": "Gaussian", "t3": "Student-t(3)", "t2": "Student-t(2)"}[law]
        lines.append(f"| {name} | {fmt(r['new'])} | {fmt(r['old'])} |")
    lines += [
        "",
        "**Power** (piecewise-linear paths judged not random-walk-like), same T and D:",
        "",
        "| waypoints | noise | new (persistence) | new, old's subset | old (Lissajous) |",
        "|---|---|---|---|---|",
    ]
    for (w, kind, noise), r in rates["power"].items():
        lines.append(f"| {w} | {kind} {noise:g} | {fmt(r['new'])} | {fmt(r['new_sub'])} | {fmt(r['old'])} |")
    lines += [
        "",
        f"**PC2's extremum vs the developmental midpoint** ({args.num_pc2} paths per row, T = 200, D = 1000, "
        "position noise 0.03; t* = time of PC2's extremum, t_dev = first time PC1 reaches the middle of its range, "
        "both as fractions of the time span; 'closer in time' = |t* − t_dev| < |t* − 0.5|; along PC1 (fractions "
        "of its range from the starting end): p* = PC2's extremum (`pc2_extremum_position`), p_wall = where the "
        "wall-time midpoint sits, 'closer along PC1' = |p* − 0.5| < |p* − p_wall|):",
        "",
        "| development | closer in time | closer along PC1 | median t* | median t_dev | median p* | median p_wall |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in pc2:
        closer = fmt(row["closer"]) if row["closer"] is not None else "— (t_dev ≈ 0.5)"
        closer_pc1 = fmt(row["closer_pc1"]) if row["closer_pc1"] is not None else "—"
        lines.append(
            f"| {row['name']} | {closer} | {closer_pc1} | {row['t_star']:.2f} | {row['t_dev']:.2f} | "
            f"{row['position']:.2f} | {row['wall']:.2f} |"
        )
    lines += run_lines(dln, grok)
    return "\n".join(lines)


def figure(rates, pc2, path):
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (ax_p, ax_f, ax_m) = plt.subplots(1, 3, figsize=(16, 4.8), constrained_layout=True)
    cells = list(rates["power"])
    xs = np.arange(len(cells))
    for off, key, label, colour in (
        (-0.2, "old", "old (Lissajous)", "tab:orange"),
        (0.2, "new", "new (persistence)", "tab:blue"),
    ):
        r = [rates["power"][c][key] for c in cells]
        ax_p.bar(
            xs + off,
            [q["rate"] for q in r],
            0.4,
            label=label,
            color=colour,
            yerr=[[q["rate"] - q["lo"] for q in r], [q["hi"] - q["rate"] for q in r]],
            capsize=2,
        )
    ax_p.set_xticks(xs, [f"{w}wp\n{k[:4]} {n:g}" for w, k, n in cells], fontsize=6)
    ax_p.set_ylabel("power (rejected at α = 0.05)")
    ax_p.set_title("piecewise-linear paths, T 200–400, D 500–3000")
    ax_p.legend(fontsize=8)
    laws = list(rates["fpr"])
    xs = np.arange(len(laws))
    for off, key, label, colour in ((-0.2, "old", "old", "tab:orange"), (0.2, "new", "new", "tab:blue")):
        r = [rates["fpr"][law][key] for law in laws]
        ax_f.bar(
            xs + off,
            [q["rate"] for q in r],
            0.4,
            label=label,
            color=colour,
            yerr=[[q["rate"] - q["lo"] for q in r], [q["hi"] - q["rate"] for q in r]],
            capsize=3,
        )
    ax_f.axhline(0.05, color="k", ls="--", lw=1, label="α")
    ax_f.set_xticks(xs, ["Gaussian", "Student-t(3)", "Student-t(2)"])
    ax_f.set_ylabel("false-positive rate")
    ax_f.set_title("random walks")
    ax_f.legend(fontsize=8)
    for row in pc2:
        v = row["vals"]
        ax_m.scatter(v[:, 1], v[:, 0], s=6, alpha=0.5, label=row["name"])
    ax_m.plot([0, 1], [0, 1], "k--", lw=1)
    ax_m.axhline(0.5, color="0.5", lw=0.8)
    ax_m.set_xlabel("developmental midpoint t_dev (PC1 at mid-range)")
    ax_m.set_ylabel("PC2 extremum time t*")
    ax_m.set_title("PC2 extremum: developmental vs wall-time midpoint")
    ax_m.legend(fontsize=5, loc="upper left")
    FIGURE.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=2000)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--num-walks", type=int, default=500)
    parser.add_argument("--num-old-walks", type=int, default=30)
    parser.add_argument("--num-paths", type=int, default=200)
    parser.add_argument("--num-old-paths", type=int, default=12)
    parser.add_argument("--num-pc2", type=int, default=200)
    parser.add_argument("--dln", action="store_true", help="also run the DLN training of dln_stages.py")
    parser.add_argument("--grokking", action="store_true", help="also run the grokking training of grokking.py")
    parser.add_argument(
        "--runs-only", action="store_true", help="only the training runs asked for (--dln, --grokking): print, no write"
    )
    parser.add_argument(
        "--num-paired", type=int, default=0, help="run only the paired old-vs-new comparison on this many paths per row"
    )
    parser.add_argument("--write", action="store_true", help="record the results in benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    args.num_surrogates_note = "199 sign-flipped surrogates (the default)"
    start = time.perf_counter()
    if args.num_paired:
        text = paired(args)
        print(text)
        if args.write:
            sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
            from _results import write_section  # noqa: PLC0415

            command = "python " + " ".join(["benchmarks/random_walk_test.py", *sys.argv[1:]])
            write_section(
                HEADING + ": paired comparison", f"`{command}`, {time.perf_counter() - start:.0f} s\n\n{text}"
            )
        return
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    dln = dln_run(args) if args.dln else None
    grok = grokking_run(args) if args.grokking else None
    if args.runs_only:
        print("\n".join(run_lines(dln, grok)))
        print(f"total {time.perf_counter() - start:.0f} s")
        return
    pc2 = pc2_claim(args)
    rates = error_rates(args)
    figure(rates, pc2, FIGURE)
    total = time.perf_counter() - start
    text = report(rates, pc2, dln, args, grok)
    print(text)
    print(f"total {total:.0f} s; figure: {FIGURE}")
    if args.write:
        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
        from _results import write_section  # noqa: PLC0415

        command = "python " + " ".join(["benchmarks/random_walk_test.py", *sys.argv[1:]])
        body = "\n".join(
            [
                f"Run {datetime.date.today()} on {platform.machine()} CPU, {os.cpu_count()} cores shared, total "
                f"{total:.0f} s: `{command}`",
                "",
                text,
                "",
                "![random-walk test](figures/random_walk_test.png)",
            ]
        )
        write_section(HEADING, body)


if __name__ == "__main__":
    main()
