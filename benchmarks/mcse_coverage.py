"""How honest is the Monte-Carlo standard error: ArviZ's alone against `slt.diagnostics.mcse`, on simulated traces.

Each case simulates ``--runs`` independent runs of ``--chains`` chains × ``--draws`` draws: unit per-draw noise
(what a minibatch λ̂ trace mostly is) plus, in some cases, a slow stationary AR(1) component (correlation time τ
draws, standard deviation s): the "slow mode" seen on the grokking MLP, whose autocorrelation is too small per
lag for the ESS estimator's truncated sum to see under the per-draw noise. The true standard error of the mean
is the spread of the runs' means (the mean is 0). Columns: the average reported MCSE over the true one, and the
fraction of runs whose mean lies within ±2 reported MCSE of 0 (for a correct standard error with many degrees of
freedom, 95%).

Estimators: *ArviZ* (`arviz.mcse`, the autocorrelation within the chains); *chain means*
(`slt.diagnostics.se_of_means` of the chain means alone, 3 degrees of freedom with 4 chains: ±2 of it covers 86%
by Student's t); *slt* (`slt.diagnostics.mcse`: the larger of the two).

    python benchmarks/mcse_coverage.py [--write]
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from _results import write_section  # noqa: E402

from slt import diagnostics  # noqa: E402

SECTION = "Monte-Carlo standard errors with a slow mode: ArviZ's against slt's (diagnostics.mcse)"

# (label, AR(1) correlation of the per-draw noise, slow component's correlation time in draws, its sd)
CASES = (
    ("independent draws", 0.0, 0, 0.0),
    ("AR(1), correlation 0.9", 0.9, 0, 0.0),
    ("noise + slow mode, τ = 1,000, s = 0.05", 0.0, 1000, 0.05),
    ("noise + slow mode, τ = 3,000, s = 0.1", 0.0, 3000, 0.1),
    ("noise + slow mode, τ = 10,000, s = 0.2", 0.0, 10000, 0.2),
)


def ar1(rng: np.random.Generator, rho: float, shape: tuple[int, int]) -> np.ndarray:
    """Stationary AR(1) with unit variance along the last axis."""
    from scipy.signal import lfilter

    innovations = rng.normal(size=shape) * np.sqrt(1 - rho**2)
    out = lfilter([1.0], [1.0, -rho], innovations, axis=-1)
    return out + rng.normal(size=shape[:-1])[..., None] * rho ** np.arange(shape[-1])


def simulate(rng, rho, tau, sd, chains, draws):
    x = ar1(rng, rho, (chains, draws)) if rho > 0 else rng.normal(size=(chains, draws))
    if tau > 0:
        x = x + sd * ar1(rng, 1.0 - 1.0 / tau, (chains, draws))
    return x


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="replace this section of RESULTS.md")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    start = time.time()
    rows = []
    for label, rho, tau, sd in CASES:
        means, reported = [], {"ArviZ": [], "chain means": [], "slt": []}
        for _ in range(args.runs):
            x = simulate(rng, rho, tau, sd, args.chains, args.draws)
            means.append(x.mean())
            reported["ArviZ"].append(diagnostics._mcse_within(x))
            reported["chain means"].append(diagnostics.se_of_means(x.mean(axis=1)))
            reported["slt"].append(diagnostics.mcse(x))
        means = np.asarray(means)
        true = means.std()
        cells = []
        for name in ("ArviZ", "chain means", "slt"):
            se = np.asarray(reported[name])
            cells.append(f"{se.mean() / true:.2f} / {np.mean(np.abs(means) < 2 * se):.0%}")
        rows.append(f"| {label} | {true:.4f} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    report = "\n".join(
        [
            f"Run {time.strftime('%Y-%m-%d')} on {platform.machine()}, {time.time() - start:.0f} s: "
            f"`python benchmarks/mcse_coverage.py --write` ({args.runs} runs of {args.chains} chains × "
            f"{args.draws:,} draws per case, seed {args.seed}).",
            "",
            __doc__.split("\n\n", 1)[1].split("\n    python")[0].strip(),
            "",
            "| case | true s.e. | ArviZ: mean/true, covered | chain means: mean/true, covered "
            "| slt: mean/true, covered |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )
    print(report)
    if args.write:
        write_section(SECTION, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
