"""λ itself: ``slt.learning_coefficient`` against Aoyagi's λ on deep linear networks and against the normal
crossings' λ (issue #13 §1).

Problems (n = 10,000 everywhere, γ = 1, SGLD, 4 chains):

* DLNs from the suite of ``benchmarks/dln_accuracy.py`` (2-4 layers; the heavier ones are left out to fit
  this machine), w* the empirical rank-r minimizer, λ and m from ``slt.theory.dln`` (Aoyagi 2024);
* normal-crossing *regressions* f = x · w1^p1 · w2^p2 (the peer's problems of
  ``benchmarks/normal_crossing_auto.py``, its data generator with n = 10,000, y = 0.25 N(0, 1)), with the
  Gaussian negative log-likelihood (y − f)²/(2σ²), σ = 0.25, as the loss (so Takio–Suzuki's T_n is defined):
  K = 32 w1^(2p1) w2^(2p2), λ and m from ``slt.theory.normal_crossing``; the tempered posterior of the
  *empirical* loss is also integrated exactly on a grid (``normal_crossing_auto.exact``) at every temperature.

One ``learning_coefficient(method="all")`` run per problem samples 8 temperatures t* · 10^(−k/5), k = 0…7
(t* = n/log n; range 25, the default grid) in one compiled grid plus one run at nβ = n for Takio–Suzuki; the
extrapolations are then refitted on the top 6 temperatures (range 10) and on all 8, with m free, with m given
(Aoyagi's) and with m given plus the fluctuation term u·sqrt(t/n), each with the per-draw MCSE of its linear
combination. Columns: the exact λ̂(t*) (NUTS reference or quadrature), the standard estimate at t*, the six
extrapolations, Takio–Suzuki; per estimator the median and max |relative error| against λ. The crossings' step
is fixed because step_size='auto' chose one whose 25× larger step at t*/25 diverged.

    python benchmarks/lambda_recovery.py --write           # table + figure + RESULTS.md section
    python benchmarks/lambda_recovery.py --only 0 6 --draws 4000   # a quick look (≈ 7 min in all on 2 cores)
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import slt
from slt.free_energy._common import _mcse

try:
    from benchmarks import normal_crossing_auto as nc
    from benchmarks._results import write_section
except ImportError:  # run as a script from benchmarks/
    import normal_crossing_auto as nc
    from _results import write_section

DLNS = [([5, 3, 5], 0), ([4, 3, 8], 0), ([8, 6, 4], 2), ([10, 5, 10], 2), ([3, 4, 5, 6], 1), ([5, 5, 5, 5, 5], 2)]
CROSSINGS = [(1, 2), (1, 1), (2, 2)]
SIGMA = 0.25
HERE = Path(__file__).parent


def crossing_loss(powers):
    p1, p2 = (float(p) for p in powers)

    def loss(params, batch):
        x, y = batch
        return jnp.mean((y - x * params["w"][0] ** p1 * params["w"][1] ** p2) ** 2) / (2 * SIGMA**2)

    return loss


def nuts_reference(widths, rank):
    """Exact-sampler λ̂(t*) from ``benchmarks/nuts_reference.json`` (n = 10⁴, γ = 1), or None."""
    ref = json.loads((HERE / "nuts_reference.json").read_text())
    prefix = f"{'-'.join(map(str, widths))} r{rank} n=10000 seed=0 gamma=1 "
    hits = [v for k, v in ref.items() if k.startswith(prefix)]
    return (hits[0]["nuts"], hits[0]["nuts_mcse"]) if hits else None


def problems(n, dln_step, crossing_step):
    out = []
    for widths, rank in DLNS:
        p = slt.models.deep_linear_network(widths, rank, num_data=n, seed=0)
        out.append(
            dict(
                name=f"DLN {'-'.join(map(str, widths))} r{rank}",
                args=(p.loss_fn, p.params, p.data),
                lam=float(p.true_llc),
                m=int(p.multiplicity),
                step=dln_step,
                exact=None,
                nuts=nuts_reference(widths, rank),
            )
        )
    batch = nc.data(n=n)
    for powers in CROSSINGS:
        lam, m = slt.theory.normal_crossing(powers)
        # the grid integrates exp(-t' (L_n(w) - L_n(0))) for the unscaled squared error: t' = t / (2σ²)
        exact = lambda t, powers=powers: nc.exact(powers, batch, t / (2 * SIGMA**2), 1.0)  # noqa: E731
        out.append(
            dict(
                name=f"x·w1^{powers[0]}·w2^{powers[1]} (K ∝ w1^{2 * powers[0]} w2^{2 * powers[1]})",
                args=(crossing_loss(powers), {"w": jnp.zeros(2)}, batch),
                lam=float(lam),
                m=int(m),
                step=crossing_step,
                exact=exact,
                nuts=None,
            )
        )
    return out


def refit(res, idx, multiplicity, fluctuation=False):
    """The extrapolation on the temperatures ``idx`` of the run, with the per-draw MCSE of its combination."""
    t = res.nbetas[idx]
    fit = slt.fit_llc_temperatures(
        t,
        res.llc_per_temperature[idx],
        res.llc_per_temperature_std[idx],
        multiplicity=multiplicity,
        num_data=res.num_data if fluctuation else None,
    )
    trace = res.excess_loss_trace[: res.nbetas.size]
    healthy = ~np.isnan(trace).any(axis=(0, 2))
    coef = np.zeros(res.nbetas.size)
    coef[idx] = fit.coefficients * t
    se = _mcse(np.tensordot(coef, trace[:, healthy], axes=1))
    coef_m = np.zeros(res.nbetas.size)
    coef_m[idx] = fit.multiplicity_coefficients * t
    m_se = _mcse(np.tensordot(coef_m, trace[:, healthy], axes=1)) if multiplicity is None else 0.0
    return fit, se, m_se


COLUMNS = [
    "t*",
    "free m, 10",
    "given m, 10",
    "given m + u, 10",
    "free m, 25",
    "given m, 25",
    "given m + u, 25",
    "Takio–Suzuki",
]


def run_problem(prob, args, n):
    top = slt.default_nbeta(n)
    nbetas = top * 10.0 ** (-np.arange(7, -1, -1) / 5)  # ascending; the last 6 span [t*/10, t*]
    start = time.perf_counter()
    auto, crossing = prob["step"] == "auto", prob["exact"] is not None
    res = slt.learning_coefficient(
        *prob["args"],
        key=jax.random.key(args.seed),
        step_size=prob["step"],
        localization=1.0,
        method="all",
        nbetas=nbetas,
        num_chains=4,
        num_draws=None if auto else (args.crossing_draws if crossing else args.draws),
        num_burnin=None if auto else (args.crossing_burnin if crossing else args.burnin),
        batch_size=None if auto else args.batch_size,
        time_budget=args.time_budget,
    )
    seconds = time.perf_counter() - start
    top6, all8 = np.arange(2, 8), np.arange(8)
    est = {"t*": (res.finite_temperature_llc, res.finite_temperature_llc_std)}
    ms = {}
    if not np.all(np.isfinite(res.llc_per_temperature)):
        raise RuntimeError(f"{prob['name']}: non-finite per-temperature estimates: {res.warnings}")
    for label, idx in (("10", top6), ("25", all8)):
        f, se, mse = refit(res, idx, None)
        est[f"free m, {label}"] = (f.llc, se)
        ms[label] = (f.multiplicity, mse)
        f, se, _ = refit(res, idx, prob["m"])
        est[f"given m, {label}"] = (f.llc, se)
        f, se, _ = refit(res, idx, prob["m"], fluctuation=True)
        est[f"given m + u, {label}"] = (f.llc, se)
    est["Takio–Suzuki"] = (res.takio_suzuki_llc, res.takio_suzuki_llc_std)
    row = dict(
        name=prob["name"],
        lam=prob["lam"],
        m=prob["m"],
        est=est,
        m_fit=ms,
        seconds=seconds,
        nuts=prob["nuts"],
        nbetas=res.nbetas.tolist(),
        values=res.llc_per_temperature.tolist(),
        stds=res.llc_per_temperature_std.tolist(),
        step=res.step_size,
        warnings=res.warnings,
    )
    if prob["exact"] is not None:
        exact = np.array([prob["exact"](t) for t in res.nbetas])
        row["exact_values"] = exact.tolist()
        row["exact_fit"] = {
            "free m, 10": slt.fit_llc_temperatures(res.nbetas[top6], exact[top6]).llc,
            "given m, 10": slt.fit_llc_temperatures(res.nbetas[top6], exact[top6], multiplicity=prob["m"]).llc,
            "t*": float(exact[-1]),
        }
    row["result"] = res
    return row


def format_row(r):
    cells = [f"{r['est'][c][0]:.3g} ± {r['est'][c][1]:.2g} ({r['est'][c][0] / r['lam'] - 1:+.1%})" for c in COLUMNS]
    mf = r["m_fit"]["10"]
    ref = (
        f"{r['nuts'][0]:.3g} ({r['nuts'][0] / r['lam'] - 1:+.1%})"
        if r.get("nuts")
        else (f"{r['exact_fit']['t*']:.3g} ({r['exact_fit']['t*'] / r['lam'] - 1:+.1%})" if "exact_fit" in r else "–")
    )
    return (
        f"| {r['name']} | {r['lam']:g} ({r['m']}) | {ref} | "
        + " | ".join(cells)
        + f" | {mf[0]:.2g} ± {mf[1]:.1g} | {r['seconds']:.0f} |"
    )


HEADER = (
    "| problem | λ (m) | exact λ̂(t*) | "
    + " | ".join(COLUMNS)
    + " | m fit (range 10) | s |\n|"
    + "---|" * (len(COLUMNS) + 5)
)


def summary(rows):
    lines = []
    for c in COLUMNS:
        errs = [abs(r["est"][c][0] / r["lam"] - 1) for r in rows if np.isfinite(r["est"][c][0])]
        dln = [abs(r["est"][c][0] / r["lam"] - 1) for r in rows if r["name"].startswith("DLN")]
        lines.append(
            f"| {c} | {statistics.median(errs):.1%} | {max(errs):.1%} | {statistics.median(dln):.1%} | {max(dln):.1%} |"
            if dln
            else f"| {c} | {statistics.median(errs):.1%} | {max(errs):.1%} | – | – |"
        )
    return (
        "| estimator | median abs. error | max abs. error | DLN median | DLN max |\n|---|---|---|---|---|\n"
        + "\n".join(lines)
    )


def figure(rows, path):
    from slt.plotting import _pyplot

    plt = _pyplot()
    cols = 3
    fig, axes = plt.subplots(math.ceil(len(rows) / cols), cols, figsize=(4.2 * cols, 3.2 * math.ceil(len(rows) / cols)))
    for ax, r in zip(np.ravel(axes), rows):
        r["result"].plot(ax=ax)
        if "exact_values" in r:
            ax.plot(1 / np.log(r["nbetas"]), r["exact_values"], "k.", ms=4, label="exact quadrature")
        ax.axhline(r["lam"], color="k", lw=0.8, ls="--", label=f"λ = {r['lam']:g} (m = {r['m']})")
        ax.set_title(r["name"], fontsize=9)
        ax.legend(fontsize=6)
    for ax in np.ravel(axes)[len(rows) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def nuts_rows(indices, n, seed):
    """The extrapolations applied to *exact-sampler* λ̂(t_k) (NUTS, full-data potential) on DLNs: what the
    estimator does without SGLD bias."""
    try:
        from benchmarks.nuts_split import DLNMomentLoss
    except ImportError:
        from nuts_split import DLNMomentLoss

    top = slt.default_nbeta(n)
    t = top * 10.0 ** (-np.arange(7, -1, -1) / 5)
    lines = []
    for i in indices:
        widths, rank = DLNS[i]
        p = slt.models.deep_linear_network(widths, rank, num_data=n, seed=0)
        start = time.perf_counter()
        vals, ses = [], []
        for tk in t:
            r = slt.ground_truth.nuts_llc(
                p.loss_fn,
                p.params,
                p.data,
                key=jax.random.key(seed),
                nbeta=float(tk),
                localization=1.0,
                num_chains=4,
                num_burnin=500,
                num_draws=1000,
                target_accept_prob=0.9,
                full_loss=DLNMomentLoss(p.data),
            )
            vals.append(r.llc_mean)
            ses.append(r.llc_mcse)
        vals, ses = np.array(vals), np.array(ses)
        lam, m = float(p.true_llc), int(p.multiplicity)
        cells = []
        for idx in (np.arange(2, 8), np.arange(8)):
            for mult in (None, m):
                f = slt.fit_llc_temperatures(t[idx], vals[idx], ses[idx], multiplicity=mult)
                cells.append(f"{f.llc:.3g} ± {f.llc_std:.2g} ({f.llc / lam - 1:+.1%})")
        lines.append(
            f"| DLN {'-'.join(map(str, widths))} r{rank} | {lam:g} ({m}) | "
            f"{vals[-1]:.3g} ({vals[-1] / lam - 1:+.1%}) | "
            + " | ".join(cells)
            + f" | {', '.join(f'{v:.3g}' for v in vals)} | {time.perf_counter() - start:.0f} |"
        )
        print(lines[-1], flush=True)
    header = (
        "| problem | λ (m) | NUTS λ̂(t*) | free m, 10 | given m, 10 | free m, 25 | given m, 25 "
        "| NUTS λ̂(t_k), t*/25 … t* | s |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    return header + "\n" + "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", type=int, nargs="*", help="indices into the problem list (DLNs, then crossings)")
    parser.add_argument("--num-data", type=int, default=10_000)
    parser.add_argument("--dln-step", type=float, default=2e-5, help="DLNs: SGLD step at t* (scaled as 1/t below)")
    parser.add_argument("--draws", type=int, default=16_000, help="DLNs: kept draws per temperature")
    parser.add_argument("--burnin", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--crossing-step", type=float, default=5e-6, help="crossings: SGLD step at t*")
    parser.add_argument("--crossing-draws", type=int, default=100_000)
    parser.add_argument("--crossing-burnin", type=int, default=10_000)
    parser.add_argument("--time-budget", type=float, default=60.0, help="step_size='auto''s budget, where used")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--nuts", type=int, nargs="*", help="instead: exact-sampler (NUTS) λ̂(t_k) on these DLNs")
    args = parser.parse_args()
    if args.nuts:
        start = time.perf_counter()
        table = nuts_rows(args.nuts, args.num_data, args.seed)
        body = (
            f"Run {datetime.date.today()} on {platform.machine()} (JAX {jax.__version__}), total "
            f"{time.perf_counter() - start:.0f} s: `python benchmarks/lambda_recovery.py --nuts "
            f"{' '.join(map(str, args.nuts))} --write`. NUTS (slt.ground_truth.nuts_llc, full-data potential, "
            "4 chains, "
            "500 warm-up + 1000 draws, target acceptance 0.9) at the same 8 temperatures as above, n = 10⁴, γ = 1; "
            "the fits are fit_llc_temperatures on these values with their MCSE (independent temperatures).\n\n"
            + table
            + "\n"
        )
        print(body)
        if args.write:
            write_section("λ itself with an exact sampler: the extrapolations on NUTS λ̂(t) (issue #13)", body)
        return
    probs = problems(args.num_data, args.dln_step, args.crossing_step)
    if args.only:
        probs = [probs[i] for i in args.only]
    start = time.perf_counter()
    rows = []
    print(HEADER, flush=True)
    for prob in probs:
        rows.append(run_problem(prob, args, args.num_data))
        print(format_row(rows[-1]), flush=True)
    total = time.perf_counter() - start
    print(summary(rows))
    dump = [{k: v for k, v in r.items() if k != "result"} for r in rows]
    (HERE / "figures").mkdir(exist_ok=True)
    Path("/tmp/lambda_recovery.json").write_text(json.dumps(dump, indent=1, default=float))
    if args.write:
        figure(rows, HERE / "figures" / "lambda_recovery.png")
        exact_lines = [
            f"- {r['name']}: exact quadrature of the empirical posterior: λ̂(t*) = {r['exact_fit']['t*']:.4f}; the "
            "extrapolations over [t*/10, t*] applied to the exact λ̂(t) (no Monte-Carlo error): free m "
            f"{r['exact_fit']['free m, 10']:.4f}, given m {r['exact_fit']['given m, 10']:.4f} (λ = {r['lam']:g})"
            for r in rows
            if "exact_fit" in r
        ]
        body = (
            f"Run {datetime.date.today()} on {platform.machine()} ({jax.default_backend()}, JAX {jax.__version__}; "
            f"2 shared CPU cores, loaded), total {total:.0f} s: `python benchmarks/lambda_recovery.py --write "
            f"--draws {args.draws} --burnin {args.burnin}`. n = {args.num_data}, γ = 1, 4 chains; DLNs: "
            f"ε = {args.dln_step:g} at t* (ε·t fixed across temperatures), batch {args.batch_size}, "
            f"{args.burnin} burn-in + {args.draws} draws; crossings: the same with ε = {args.crossing_step:g} "
            f"at t*, {args.crossing_burnin} burn-in + {args.crossing_draws} draws (step_size='auto' chose 2e-5 "
            "there, whose 25× larger step at t*/25 diverged). Each cell: λ̂ ± MCSE (relative error against λ). "
            "Ranges: '10' = 6 temperatures over [t*/10, t*], '25' = 8 over [t*/25, t*] (the default since this run); "
            "'given m' uses Aoyagi's / the crossing's m; '+ u' adds the fixed-data fluctuation term "
            "u·sqrt(t/n). 'exact λ̂(t*)': NUTS at t* (benchmarks/nuts_reference.json) for DLNs, grid quadrature for "
            "the crossings. Figure: `benchmarks/figures/lambda_recovery.png`.\n\n"
            + HEADER
            + "\n"
            + "\n".join(format_row(r) for r in rows)
            + "\n\n"
            + summary(rows)
            + "\n\n"
            + "\n".join(exact_lines)
            + "\n"
        )
        write_section("λ itself: learning_coefficient against Aoyagi and the normal crossings (issue #13)", body)


if __name__ == "__main__":
    main()
