"""Accuracy of slt.bif and slt.susceptibilities against closed forms, by sampler and step size.

Problem: Gaussian linear regression (d = 4, n = 200, ``slt.models.linear_regression(4, num_data=200, seed=1)``),
γ = 1, nβ = n/log n, four probe examples (the fixtures of ``tests/test_influence.py``). The posterior is
N(w*, Σ), Σ = (nβH + γI)⁻¹, so Cov(ℓ_p, ℓ_q) = ½S² + m mᵀ∘S exactly (SCIENCE.md §6), and full-batch SGLD at step ε
has its own Gaussian stationary law (variance 1/(c(1 − εc/4)) along each eigendirection of nβH + γI), so the
step's bias can be told from the Monte-Carlo error. For each sampler setting: the largest |z| = |estimate −
exact| / MCSE over the 10 distinct covariance entries, against the exact posterior and (SGLD, full batch) against
the chain's stationary law, and the median relative error of the variances. Then the susceptibility matrix
(components a, b, all, a0 × probes) against its closed form.

    python benchmarks/influence_accuracy.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import numpy as np

import slt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_influence import (  # noqa: E402
    GAMMA,
    N,
    P,
    _problem,
    _sgld_stationary_covariance,
    _split_loss,
    exact_loss_covariance,
    exact_susceptibility,
)

SETTINGS = [  # (sampler, step size, batch size)
    ("mala", 0.05, None),
    ("sgld", 0.01, N),
    ("sgld", 0.004, N),
    ("sgld", 0.001, N),
    ("sgld", 0.004, 32),
]


def main() -> None:
    p, probe = _problem()
    nbeta = float(slt.default_nbeta(N))
    exact = exact_loss_covariance(p, probe, nbeta, GAMMA)
    iu = np.triu_indices(P)
    print(
        "| sampler | ε | batch | draws | max abs z (posterior) | max abs z (SGLD law) | median rel. err. of Var | s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for sampler, eps, batch in SETTINGS:
        draws = 10_000 if eps >= 0.004 else 40_000
        start = time.perf_counter()
        res = slt.bif(
            p.loss_fn,
            p.params,
            p.data,
            key=jax.random.key(0),
            probe_data=probe,
            step_size=eps,
            sampler=sampler,
            batch_size=batch,
            num_chains=8,
            num_draws=draws,
            num_burnin=1000,
            nbeta=nbeta,
            localization=GAMMA,
        )
        seconds = time.perf_counter() - start
        z = np.abs((res.covariance - exact) / res.covariance_mcse)[iu].max()
        law = "-"
        if sampler == "sgld" and batch == N:
            own = _sgld_stationary_covariance(p, probe, nbeta, GAMMA, eps)
            law = f"{np.abs((res.covariance - own) / res.covariance_mcse)[iu].max():.2f}"
        rel = np.median(np.abs(np.diag(res.covariance) / np.diag(exact) - 1))
        print(f"| {sampler} | {eps:g} | {res.batch_size} | 8 × {draws} | {z:.2f} | {law} | {rel:.2%} | {seconds:.1f} |")
    params = {"a": p.params[:2], "b": p.params[2:]}
    x, y = p.data
    probes = {"probe": probe, "scaled": (2.0 * x[:30], y[:30])}
    components = {
        "a": lambda path, leaf: path == ("a",),
        "b": lambda path, leaf: path == ("b",),
        "all": lambda path, leaf: True,
        "a0": lambda path, leaf: np.array([True, False]) if path == ("a",) else False,
    }
    blocks = {"a": [0, 1], "b": [2, 3], "all": [0, 1, 2, 3], "a0": [0]}
    res = slt.susceptibilities(
        _split_loss,
        params,
        p.data,
        key=jax.random.key(1),
        components=components,
        probes=probes,
        step_size=0.05,
        sampler="mala",
        num_chains=16,
        num_draws=20_000,
        num_burnin=1000,
        nbeta=nbeta,
        localization=GAMMA,
    )
    chi = np.array(
        [[exact_susceptibility(p, q, blocks[c], nbeta, GAMMA)[1] for q in probes.values()] for c in res.components]
    )
    print()
    print("| component | probe | χ exact | χ estimate ± MCSE | z |")
    print("|---|---|---|---|---|")
    for i, c in enumerate(res.components):
        for j, q in enumerate(res.probes):
            z = (res.chi[i, j] - chi[i, j]) / res.chi_mcse[i, j]
            print(f"| {c} | {q} | {chi[i, j]:+.4f} | {res.chi[i, j]:+.4f} ± {res.chi_mcse[i, j]:.4f} | {z:+.2f} |")


if __name__ == "__main__":
    main()
