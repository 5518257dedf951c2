"""Paired vs plain LLC estimator: same chains, two ways of subtracting the loss at w*.

paired: nβ (L_B(w_t) − L_B(w*)), the loss at w* on the same minibatch (slt's default);
plain:  nβ (L_B(w_t) − L_n(w*)), the estimator of Lau et al. and devinterp.
Both have the same expectation. This script measures, on the same runs (8 chains), the per-draw standard
deviation, the standard error of the mean from the spread of the 8 chain means (std/√8, assumption-free), and
ArviZ's autocorrelation-based MCSE and ESS.

    python benchmarks/paired_estimator.py [--write]
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

import slt
from slt import diagnostics

try:
    from benchmarks._results import write_section
except ImportError:
    from _results import write_section

CONFIGS = [([10, 20, 10], 5), ([5, 4, 5], 0), ([10, 20, 20, 10], 5)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    header = (
        "| widths | r | λ | paired λ̂ ± SE | plain λ̂ ± SE | SE plain / paired | per-draw std paired / plain | "
        "ArviZ MCSE paired, plain | ArviZ ESS paired, plain |\n|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    print(header)
    for widths, rank in CONFIGS:
        p = slt.models.deep_linear_network(widths, rank, num_data=10_000)
        res = slt.estimate_llc(
            p.loss_fn,
            p.params,
            p.data,
            key=jax.random.key(0),
            step_size=2e-6,
            num_chains=8,
            num_draws=40_000,
            num_burnin=10_000,
            batch_size=100,
        )
        plain = res.nbeta * (res.loss_trace - res.init_loss)
        se_paired = res.llc_per_chain.std(ddof=1) / np.sqrt(res.num_chains)
        se_plain = plain.mean(axis=1).std(ddof=1) / np.sqrt(res.num_chains)
        row = (
            f"| {'-'.join(map(str, widths))} | {rank} | {float(p.true_llc):g} | "
            f"{res.llc_mean:.2f} ± {se_paired:.2f} | {plain.mean():.2f} ± {se_plain:.2f} | "
            f"{se_plain / se_paired:.1f} | {res.llc_trace.std() / plain.std():.3f} | "
            f"{res.llc_mcse:.2f}, {diagnostics.mcse(plain):.2f} | {res.ess:.0f}, {diagnostics.ess(plain):.0f} |"
        )
        rows.append(row)
        print(row, flush=True)
    if args.write:
        body = "\n".join(
            [
                "Same chains (SGLD ε = 2e-6, nβ = n/log n, γ = 1, batch 100, 8 × 40 000 draws after 10 000, "
                "n = 10 000), two estimators. SE = std of the 8 chain means / √8. "
                "`python benchmarks/paired_estimator.py --write`",
                "",
                header,
                *rows,
                "",
                "The paired estimator is the default. It estimates the same expectation; the minibatch noise "
                "common to L_B(w_t) and L_B(w*) cancels, so the per-draw spread drops 7-14x and the error of the "
                "mean (chain-mean spread) drops by the factor in the SE column for the same draws. It also keeps "
                "the diagnostics honest: in the plain trace the white minibatch noise hides the slow "
                "autocorrelation of the chains, so ArviZ reports an ESS close to the number of draws and an MCSE "
                "smaller than the real error (compare with the chain-mean SE); on the paired trace ArviZ's MCSE "
                "agrees with the chain-mean SE.",
            ]
        )
        write_section("Paired vs plain estimator", body)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
