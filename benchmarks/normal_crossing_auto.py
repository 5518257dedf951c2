"""The PyTorch peer's accuracy cases: normal crossings f = x · Π w_i^{p_i} at w* = 0, against 2-d quadrature.

Data as in devinterp's tests: n = 1,000, x ~ N(0, 2²), y = 0.25 · N(0, 1) (the true function is 0), the loss the
mean squared error mean (y − f)² written with **float powers** ``w ** p`` (JAX's second derivative of ``w ** 1.0``
at 0 is NaN, so the curvature at w* is probed nearby). The exact tempered value
E[nβ(L_n(w) − L_n(0))] under p(w) ∝ exp(−nβ L_n(w) − γ|w|²/2) is a 2-d integral, computed on a grid
(L_n is a quadratic in g = Π w^p: mean y² − 2g mean xy + g² mean x²). ``step_size="auto"`` with every other
argument at its default except γ. ``--write`` puts the table in benchmarks/RESULTS.md.

    python benchmarks/normal_crossing_auto.py --write
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import slt

try:
    from benchmarks._results import write_section
except ImportError:  # run as a script from benchmarks/
    from _results import write_section

CASES = [
    ((1.0, 1.0), "K = w1² w2² (λ = 1/2, m = 2)"),
    ((1.0, 2.0), "K = w1² w2⁴ (λ = 1/4, m = 1)"),
    ((2.0, 2.0), "K = w1⁴ w2⁴ (λ = 1/4, m = 2)"),
]


def data(n=1000, seed=42):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 2.0, n).astype(np.float32)
    y = (0.25 * rng.normal(0.0, 1.0, n)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(y)


def make_loss(powers):
    p1, p2 = powers

    def loss(params, batch):
        x, y = batch
        return jnp.mean((y - x * params["w"][0] ** p1 * params["w"][1] ** p2) ** 2)

    return loss


def exact(powers, batch, nbeta, gamma, grid=4001):
    x, y = (np.asarray(a, np.float64) for a in batch)
    b, c = np.mean(x * y), np.mean(x * x)  # L_n(w) − L_n(0) = −2 g b + g² c
    half = 8.0 / math.sqrt(gamma)
    w = np.linspace(-half, half, grid)
    w1, w2 = np.meshgrid(w, w, indexing="ij")
    g = w1 ** int(powers[0]) * w2 ** int(powers[1])
    excess = -2 * g * b + g * g * c  # L_n(w) − L_n(0)
    log_weight = -nbeta * excess - 0.5 * gamma * (w1**2 + w2**2)
    log_weight -= log_weight.max()
    weight = np.exp(log_weight)
    return float(nbeta * np.sum(weight * excess) / np.sum(weight))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gammas", type=float, nargs="*", default=[1.0, 10.0, 100.0])
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    batch = data()
    n = batch[0].shape[0]
    nbeta = n / math.log(n)
    rows, errors = [], []
    start = time.perf_counter()
    for powers, label in CASES:
        loss = make_loss(powers)
        for gamma in args.gammas:
            truth = exact(powers, batch, nbeta, gamma)
            t0 = time.perf_counter()
            res = slt.estimate_llc(
                loss, {"w": jnp.zeros(2)}, batch, key=jax.random.key(0), step_size="auto", localization=gamma
            )
            seconds = time.perf_counter() - t0
            err = res.llc_mean / truth - 1
            errors.append(abs(err))
            rows.append(
                f"| {label} | {gamma:g} | {truth:.4f} | {res.llc_mean:.4f} ± {res.llc_mcse:.2g} | {err:+.1%} | "
                f"{res.step_size:.2g} | {res.calibration.hessian_top:.3g} | {seconds:.1f} |"
            )
            print(rows[-1], flush=True)
    summary = f"median |error| {statistics.median(errors):.1%}, max {max(errors):.1%}"
    print(summary)
    body = (
        f"Run {datetime.date.today()} on {platform.machine()} ({jax.default_backend()}, JAX {jax.__version__}), "
        f"total {time.perf_counter() - start:.0f} s: `python benchmarks/normal_crossing_auto.py --write`. "
        f"nβ = n/log n = {nbeta:.1f}; exact: 2-d quadrature of the tempered posterior; h_max: the curvature the "
        "calibration used (probed near w* = 0, where the float-power Hessian is NaN).\n\n"
        "| K | γ | exact | λ̂ auto ± MCSE | error | ε | h_max | s |\n|---|---|---|---|---|---|---|---|\n"
        + "\n".join(rows)
        + f"\n\n{summary}.\n"
    )
    if args.write:
        write_section("The PyTorch peer's normal crossings with step_size='auto' (issue #11)", body)


if __name__ == "__main__":
    main()
