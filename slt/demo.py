"""The main job: estimate the LLC of a deep linear network whose learning coefficient is known in closed form.

Run with ``python -m slt.demo`` (``make demo``). It builds a 2-layer deep linear network (reduced-rank
regression, widths 10-20-10, true rank 5, n = 10 000, 400 parameters) at its rank-5 minimizer, estimates
the LLC with 4 SGLD chains at the settings of the issue (ε = 2e-6, nβ = n/log n, γ = 1, batch 100,
10 000 burn-in + 40 000 kept draws), prints the estimate against Aoyagi's λ with R-hat and ESS, and writes
a trace plot.
"""

from __future__ import annotations

import argparse
import time

import jax

import slt


def main(argv: list[str] | None = None) -> slt.LLCResult:
    parser = argparse.ArgumentParser(prog="python -m slt.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[10, 20, 10], help="layer widths H_0 ... H_L")
    parser.add_argument("--rank", type=int, default=5, help="rank r of the true product")
    parser.add_argument("--num-data", type=int, default=10_000)
    parser.add_argument("--step-size", type=float, default=2e-6)
    parser.add_argument("--num-chains", type=int, default=4)
    parser.add_argument("--num-draws", type=int, default=40_000)
    parser.add_argument("--num-burnin", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default="llc_demo.png", help="where to write the trace plot (PNG)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    problem = slt.models.deep_linear_network(args.widths, args.rank, num_data=args.num_data, seed=args.seed)
    lam = float(problem.true_llc)
    widths = "-".join(map(str, args.widths))
    print(
        f"deep linear network {widths}, rank {args.rank}: d = {problem.num_parameters} parameters, "
        f"n = {args.num_data}; closed-form λ = {problem.true_llc} (m = {problem.multiplicity}, Aoyagi 2024)"
    )
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}")
    res = slt.estimate_llc(
        problem.loss_fn,
        problem.params,
        problem.data,
        key=jax.random.key(args.seed),
        step_size=args.step_size,
        num_chains=args.num_chains,
        num_draws=args.num_draws,
        num_burnin=args.num_burnin,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    total = time.perf_counter() - start
    print()
    print(res.summary())
    print()
    rel = (res.llc_mean - lam) / lam
    print(f"LLC estimate  {res.llc_mean:.3f} ± {res.llc_std:.3f} (std over chains; MCSE {res.llc_mcse:.3f})")
    print(f"closed form   {lam:.3f}   relative error {rel:+.1%}")
    print(f"R-hat {res.rhat:.4f}   ESS bulk {res.ess:.0f}   ESS tail {res.ess_tail:.0f}")
    print(f"wall time     {total:.1f} s in all (sampling {res.wall_time:.1f} s, compile included)")
    fig = res.plot(true_llc=lam, title=f"DLN {widths}, rank {args.rank}: λ̂ = {res.llc_mean:.2f}, λ = {lam:g}")
    fig.savefig(args.plot, dpi=120)
    print(f"trace plot    {args.plot}")
    return res


if __name__ == "__main__":
    main()
