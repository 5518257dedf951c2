"""Toy model of superposition: LLCs of the 5-gon and 6-gon and the Bayesian 5-gon → 6-gon crossover.

Reference: Chen, Lau, Mendel, Wei, Murfet, arXiv 2310.06301 (c = 6 features, 2 hidden dims): λ = 7 (5-gon)
and 8.5 (6-gon); their SGLD estimates at n = 5000 were 7.705 and 9.027 (Table K.1); the Bayesian 5 → 6-gon
transition near n ≈ 600. Here (``slt.models.tms``, loss = mean over examples of ‖x − x̂‖², dead bias −4):

1. ``slt.compare_models`` at n = 5000 with SGLD (the headline estimate) and with MALA (full batch,
   Metropolis-adjusted, so exact for the localized posterior: it separates sampler error from finite-n
   effects), both at nβ = n/log n, γ = 1;
2. the same LLC with the population loss H (closed form, no data noise) at nβ = n/log n for n = 5e3 … 5e6,
   to show how the finite-n value approaches λ;
3. the crossover n of F(n) = nL + λ log n from the exact λ and the population losses, from the exact λ and
   this data set's losses, and from the estimates.

    python benchmarks/tms.py            # prints the tables
    python benchmarks/tms.py --write    # and writes the section of benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import slt
from slt.comparison import crossover_num_data
from slt.models.tms import kgon_params, kgon_radius_and_bias, population_loss

try:
    from benchmarks._results import write_section
except ImportError:  # run as a script from benchmarks/
    from _results import write_section

CHEN = {"5-gon": 7.705, "6-gon": 9.027}
CHEN_LOSS = {"5-gon": 0.06874, "6-gon": 0.04819}
CHEN_CROSSOVER = 600
POINTS = {"5-gon": 5, "6-gon": 6}


def _population_problem_loss(params, batch):
    """H(w), the population loss, as a loss_fn that ignores the (dummy) batch: the LLC without data noise."""
    return population_loss(params) + 0.0 * jnp.mean(batch)


def population_scan(args) -> list[dict]:
    rows = []
    for n in args.scan:
        t = n / math.log(n)
        step = 0.8 / (1.3 * t + args.localization)  # ε c_max ≈ 0.8 at the largest curvature (≈ 1.3): acceptance ≈ 0.9
        for name, k in POINTS.items():
            radius, bias = kgon_radius_and_bias(k)
            dead = [args.dead_bias] * (6 - k)
            params = kgon_params(k, radius, bias, dead_biases=dead)
            res = slt.estimate_llc(
                _population_problem_loss,
                params,
                jnp.zeros((64, 1)),
                key=jax.random.key(args.seed),
                sampler="mala",
                step_size=step,
                nbeta=t,
                num_chains=args.num_chains,
                num_draws=args.num_draws,
                num_burnin=args.num_burnin,
                localization=args.localization,
            )
            rows.append(dict(n=n, t=t, point=name, res=res))
            print(
                f"population, n = {n:.0e} (nβ = {t:.0f}), {name}: λ̂ = {res.llc_mean:.3f} ± {res.llc_mcse:.3f} "
                f"(R-hat {res.rhat:.3f}, ESS {res.ess:.0f}, acceptance {np.mean(res.acceptance_rate):.2f})",
                flush=True,
            )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-data", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dead-bias", type=float, default=-4.0)
    parser.add_argument("--localization", type=float, default=1.0)
    parser.add_argument("--step-size", type=float, default=3e-4, help="SGLD ε")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--mala-step-size", type=float, default=1e-3)
    parser.add_argument("--num-chains", type=int, default=8)
    parser.add_argument("--num-draws", type=int, default=40_000)
    parser.add_argument("--num-burnin", type=int, default=10_000)
    parser.add_argument("--scan", type=float, nargs="*", default=[5e3, 5e4, 5e5, 5e6])
    parser.add_argument("--write", action="store_true", help="write the section into benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    problems = {
        name: slt.models.tms(num_data=args.num_data, seed=args.seed, point=k, dead_bias=args.dead_bias)
        for name, k in POINTS.items()
    }
    data = problems["5-gon"].data
    points = {name: p.params for name, p in problems.items()}
    exact = {name: float(p.true_llc) for name, p in problems.items()}
    common = dict(
        key=jax.random.key(args.seed),
        nbeta=None,
        localization=args.localization,
        num_chains=args.num_chains,
        num_draws=args.num_draws,
        num_burnin=args.num_burnin,
    )
    t0 = time.perf_counter()
    sgld = slt.compare_models(
        problems["5-gon"].loss_fn,
        points,
        data,
        step_size=args.step_size,
        batch_size=args.batch_size,
        **common,
    )
    t_sgld = time.perf_counter() - t0
    print(sgld.summary(), flush=True)
    t0 = time.perf_counter()
    mala = slt.compare_models(
        problems["5-gon"].loss_fn, points, data, sampler="mala", step_size=args.mala_step_size, **common
    )
    t_mala = time.perf_counter() - t0
    print(mala.summary(), flush=True)
    theory = slt.compare_models(problems["5-gon"].loss_fn, points, data, llcs=exact)
    scan = population_scan(args)

    pop_loss = {
        name: float(population_loss(kgon_params(k, *kgon_radius_and_bias(k)), xp=np)) for name, k in POINTS.items()
    }
    delta_h = pop_loss["5-gon"] - pop_loss["6-gon"]
    cross_theory_pop = crossover_num_data(delta_h, exact["5-gon"] - exact["6-gon"])

    def crossing(comp):
        c = comp.crossover("5-gon", "6-gon")
        return "none (6-gon preferred at every n)" if c is None else str(c)

    def with_pop(comp):
        d = comp.llcs[0] - comp.llcs[1]
        s = math.hypot(*comp.llc_errors)
        n_c = crossover_num_data(delta_h, d)
        lo, hi = (crossover_num_data(delta_h, d + z * 1.96 * s) for z in (1, -1))
        fmt = lambda v: f"{v:.0f}" if math.isfinite(v) else "none"  # noqa: E731
        return f"n ≈ {fmt(n_c)} (95%: {fmt(lo)} – {fmt(hi)})"

    total = time.perf_counter() - start

    def cell(comp, k):
        res = comp.llc_results[comp.names[k]]
        acc = "" if res.acceptance_rate is None else f", acc. {np.mean(res.acceptance_rate):.2f}"
        return f"{comp.llcs[k]:.2f} ± {comp.llc_errors[k]:.2f} (R-hat {res.rhat:.3f}, ESS {res.ess:.0f}{acc})"

    rows = []
    for k, name in enumerate(sgld.names):
        pop = {r["n"]: r["res"] for r in scan if r["point"] == name}
        for label, comp in (("SGLD", sgld), ("MALA", mala)):
            print(f"{label} {name} per chain: {np.round(comp.llc_results[name].llc_per_chain, 2)}")
        rows.append(
            f"| {name} | {exact[name]:g} | {CHEN[name]} | {cell(sgld, k)} | {cell(mala, k)} | "
            + " / ".join(f"{pop[n].llc_mean:.2f}" for n in args.scan)
            + f" | {sgld.losses[k]:.5f} | {pop_loss[name]:.5f} ({CHEN_LOSS[name]}) |"
        )
    header = (
        "| point | λ (Chen et al.) | Chen et al. λ̂, n = 5000 | ours, SGLD, n = 5000 | ours, MALA (exact posterior), "
        f"n = 5000 | population loss, n = {' / '.join(f'{n:.0e}' for n in args.scan)} | L_n(w*) (this data) | "
        "population loss (Chen et al.) |\n|---|---|---|---|---|---|---|---|"
    )
    cross_lines = [
        f"- exact λ (7, 8.5), population losses: n ≈ {cross_theory_pop:.0f}",
        f"- exact λ, this data set's L_n(w*): {crossing(theory)}",
        f"- SGLD λ̂ (n = 5000), this data set's L_n(w*): {crossing(sgld)}",
        f"- SGLD λ̂ (n = 5000), population losses: {with_pop(sgld)}",
        f"- MALA λ̂ (n = 5000), this data set's L_n(w*): {crossing(mala)}",
        f"- Chen et al.: ≈ {CHEN_CROSSOVER}",
    ]
    text = "\n".join(
        [header, *rows, "", "Crossover n of F(n) = nL + λ log n (5-gon preferred below, 6-gon above):", *cross_lines]
    )
    print(text)
    print(f"total {total:.0f} s (SGLD comparison {t_sgld:.0f} s, MALA {t_mala:.0f} s)")
    if args.write:
        command = "python " + " ".join(["benchmarks/tms.py", *sys.argv[1:]])
        settings = (
            f"`slt.models.tms(num_data={args.num_data}, seed={args.seed}, point=k, dead_bias={args.dead_bias:g})`: "
            "x = μ e_i (i uniform over c = 6 features, μ ~ U[0, 1]), per-example loss ‖x − ReLU(WᵀWx + b)‖² "
            "(summed over features, no ½), w* the k-gon refined to the critical point of L_n. nβ = n/log n, "
            f"γ = {args.localization:g}, {args.num_chains} chains × {args.num_draws} draws after {args.num_burnin} "
            f"burn-in. Errors: standard errors, the larger of the MCSE and the between-chain std/√C (as "
            f"`compare_models` uses). SGLD: ε = {args.step_size:g}, batch {args.batch_size}. MALA: full batch, "
            f"ε = {args.mala_step_size:g}. Population column: the same estimator on the closed-form population "
            "loss H (no data), MALA with ε·(1.3 nβ + γ) = 0.8, nβ = n/log n (±0.03–0.09)."
        )
        body = "\n".join(
            [
                settings,
                "",
                f"Run {datetime.date.today()} on {platform.machine()} CPU ({jax.devices()[0].platform}, JAX "
                f"{jax.__version__}), total {total:.0f} s: `{command}`",
                "",
                text,
            ]
        )
        write_section("Toy model of superposition", body + "\n\n" + NOTE)


NOTE = """What the numbers say:

- **The k-gons are the published ones.** The population losses of the constructed 5-gon and 6-gon are Chen et
  al.'s to the five digits they give, and λ = 7 and 8.5 follow from the rank of the Hessian (1 + 3 zero
  eigenvalues for the 5-gon: the rotation and the dead feature's W_6, b_6; 1 for the 6-gon), checked in
  tests/test_tms.py.
- **At n = 5000 the localized posterior itself sits well above λ** (about +1.7 for the 5-gon, +0.8 for the
  6-gon), so the gap is a finite-n effect, not a sampler error: MALA samples that posterior exactly, and the
  same estimator on the population loss (no data noise) gives nearly the same values at n = 5000 and falls to 7.04
  and 8.48 by n = 5·10⁶. Where the excess comes from: the 5-gon's dead feature lives on a small plateau
  (‖W_6‖ ≲ 0.24, set by the live bias b* = −0.28) with soft walls (past them only inputs with μ near 1 switch
  a live output on, so the loss grows like the cube of the overshoot), which the posterior at nβ ≈ 590
  overruns; and along some directions the loss saturates (a bias pushed down switches its feature off).
  For the same reason the 6-gon's value exceeds d/2 = 9: that bound holds for analytic models and
  asymptotically, and this ReLU model at this n is neither (so `estimate_llc`'s "exceeds d/2: step size
  too large" warning is a false alarm for the MALA runs).
- **SGLD** (minibatch 500, ε = 3e-4) reads 0.2 (5-gon) and 0.5 (6-gon) above MALA: discretization and
  minibatch noise. Smaller steps did not reach stationarity in 50k steps (R-hat 1.04-1.06, ESS 55-151 at
  ε ≤ 1e-4 in a sweep); larger ones inflate the estimate further (the 6-gon read 10.2 at ε = 1e-3). With
  4 chains, runs with other keys moved the estimates by up to 0.4 against MCSEs of about 0.1; hence 8
  chains, and the between-chain standard error where it is the larger.
- **The 5-gon's dead bias matters for sampling.** With the dead bias at b* = −0.28 instead of −4, 6 of 8
  SGLD chains (γ = 1, ε = 3e-4) left the 5-gon for the 6-gon within 12 000 steps: its plateau ends where
  ‖W_6‖² + b_6 > 0, and from there the loss falls. λ is the same for any negative dead bias.
- **Against Chen et al.** (7.705, 9.027): our values are higher by about 1.0-1.2 (5-gon) and 0.3-0.8 (6-gon).
  We do not know their sampler settings (localization, step size, nβ, and the dead feature's bias in their
  5-gon, which sets the plateau the chains explore); estimates at a finite n depend on them at the ±1 level
  (a γ = 100 sweep gave about 4.4 and 5.1), while the n → ∞ values do not.
- **Crossover.** With the exact λ and the population losses, n ΔL = Δλ log n gives n ≈ 445, below their
  ≈ 600; this data set's losses (ΔL = 0.0242 against 0.0206, sampling noise at n = 5000) give 367. The
  formula is leading order: at n ≈ 445 every nat of O(1) free-energy difference moves the crossover by
  1/(ΔL − |Δλ|/n) ≈ 58, so ≈ 600 corresponds to about 2.7 nats in the 5-gon's favour. Candidates: the prior
  mass of each neighbourhood (for the 5-gon it includes the volume of its flat plateau), the number of
  symmetric copies (72 5-gons against 60 6-gons up to O(2): 0.18 nats), and the noise level the loss
  implies (ours is N(x, ½I); with ½‖x − x̂‖², a unit-variance likelihood, ΔL halves and the formula gives
  n ≈ 1010). Plugging the n = 5000 estimates into the asymptotic formula gives 130-240: their difference
  (0.65-0.9) is far from Δλ = 1.5, so the crossover should be read from the asymptotic λ, or from free
  energies computed at the n in question, not from a finite-n LLC."""


if __name__ == "__main__":
    main()
