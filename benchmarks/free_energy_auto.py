"""The free-energy family with ``step_size="auto"`` against closed forms (issue #11 §5).

Regular models (linear regression at its least-squares minimizer, Hessian eigenvalues h_i of XᵀX/n, γ = 1):

* ``slt.wbic`` (at the default ``bias_tolerance``, ``slt.calibration.BIAS_TOLERANCE``, and at 0.02): λ̂ at
  t = n/log n against :math:`\\tfrac12\\sum_i t h_i/(t h_i + \\gamma)` (the localized posterior's exact value);
* ``slt.llc_multitemperature``: the slope against the same linear combination of the exact
  :math:`\\mathbb E_t[n(L_n - L^*)] = \\tfrac n2\\sum_i h_i/(t h_i + \\gamma)` (the fit's own target), and against
  λ = d/2;
* ``slt.local_free_energy``: the excess free energy against :math:`\\tfrac12\\sum_i \\log(1 + n h_i/\\gamma)`.

Singular models: ``llc_multitemperature`` on the 2-layer DLNs of the accuracy suite (n = 10⁴, γ = 1) against
Aoyagi's λ. Every call uses ``step_size="auto"`` with its default ``time_budget``; nothing else is set.

    python benchmarks/free_energy_auto.py [--write] [--only-regular | --only-dln]
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np

import slt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402
from dln_accuracy import CONFIGS  # noqa: E402

SECTION = "The free-energy family with step_size='auto' against closed forms (issue #11)"
GAMMA = 1.0
TIGHT = 0.02  # a tighter bias_tolerance for WBIC than the default (slt.calibration.BIAS_TOLERANCE)
REGULAR = [(4, 1000, 1), (8, 2000, 2), (16, 10000, 3)]  # (d, n, seed)
DLNS = [(w, r) for w, r in CONFIGS if len(w) == 3]


def eigenvalues(problem):
    x = np.asarray(problem.data[0], dtype=np.float64)
    return np.linalg.eigvalsh(x.T @ x / x.shape[0])


def row(name, estimate, std, exact, seconds, step):
    err = estimate / exact - 1
    return dict(
        name=name,
        estimate=estimate,
        std=std,
        exact=exact,
        error=err,
        z=(estimate - exact) / std,
        seconds=seconds,
        step=step,
    )


def regular_rows(d, n, seed, key):
    p = slt.models.linear_regression(d, num_data=n, seed=seed)
    h = eigenvalues(p)
    t = n / math.log(n)
    args = (p.loss_fn, p.params, p.data)
    out = []
    exact_wbic = 0.5 * np.sum(t * h / (t * h + GAMMA))
    for tolerance in (None, TIGHT):
        start = time.perf_counter()
        extra = {} if tolerance is None else {"bias_tolerance": tolerance}
        w = slt.wbic(*args, key=key, localization=GAMMA, step_size="auto", **extra)
        name = f"d={d}, n={n}: wbic λ̂" + ("" if tolerance is None else f", bias_tolerance={tolerance:g}")
        out.append(row(name, w.llc, w.llc_std, exact_wbic, time.perf_counter() - start, w.step_size))
    start = time.perf_counter()
    m = slt.llc_multitemperature(*args, key=key, localization=GAMMA, step_size="auto")
    exact_slope = np.sum(m.slope_coefficients * n * 0.5 * np.sum(h / (m.nbetas[:, None] * h + GAMMA), axis=1))
    seconds = time.perf_counter() - start
    out.append(
        row(
            f"d={d}, n={n}: llc_multitemperature slope", m.llc, m.llc_std, exact_slope, seconds, m.calibration.step_size
        )
    )
    out.append(
        row(f"d={d}, n={n}: llc_multitemperature vs d/2", m.llc, m.llc_std, d / 2, seconds, m.calibration.step_size)
    )
    start = time.perf_counter()
    f = slt.local_free_energy(*args, key=key, localization=GAMMA, step_size="auto")
    out.append(
        row(
            f"d={d}, n={n}: local_free_energy excess",
            f.free_energy_excess,
            f.free_energy_std,
            0.5 * np.sum(np.log1p(n * h / GAMMA)),
            time.perf_counter() - start,
            f.calibration.step_size,
        )
    )
    return out


def dln_row(widths, rank, key):
    p = slt.models.deep_linear_network(widths, rank, num_data=10000, seed=0, point="minimum")
    start = time.perf_counter()
    m = slt.llc_multitemperature(p.loss_fn, p.params, p.data, key=key, localization=GAMMA, step_size="auto")
    name = f"DLN {'-'.join(map(str, widths))} r{rank}: llc_multitemperature vs λ"
    r = row(name, m.llc, m.llc_std, float(p.true_llc), time.perf_counter() - start, m.calibration.step_size)
    return r


def table(rows):
    lines = ["| quantity | estimate ± MCSE | exact | error | z | ε | s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['estimate']:.4g} ± {r['std']:.2g} | {r['exact']:.4g} | {r['error']:+.1%} | "
            f"{r['z']:+.1f} | {r['step']:.2g} | {r['seconds']:.0f} |"
        )
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--only-regular", action="store_true")
    parser.add_argument("--only-dln", action="store_true")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", slt.SamplingWarning)
    load_before = os.getloadavg()
    start = time.perf_counter()
    key = jax.random.key(0)
    regular, dln = [], []
    if not args.only_dln:
        for d, n, seed in REGULAR:
            regular += regular_rows(d, n, seed, key)
            for r in regular[-5:]:
                print(
                    f"{r['name']}: {r['estimate']:.4g} ± {r['std']:.2g} vs {r['exact']:.4g} ({r['error']:+.1%})",
                    flush=True,
                )
    if not args.only_regular:
        for widths, rank in DLNS:
            dln.append(dln_row(widths, rank, key))
            r = dln[-1]
            print(
                f"{r['name']}: {r['estimate']:.4g} ± {r['std']:.2g} vs {r['exact']:.4g} ({r['error']:+.1%})", flush=True
            )
    total = time.perf_counter() - start
    lines = [
        f"Run {datetime.date.today().isoformat()} on {platform.machine()} (cpu, JAX {jax.__version__}), total "
        f"{total:.0f} s, load {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after: "
        f"`python benchmarks/free_energy_auto.py{' --write' if args.write else ''}`. γ = {GAMMA:g}, "
        '`step_size="auto"` and every other argument at its default (4 chains, `time_budget` 120 s).',
        "",
    ]
    if regular:
        abs_err = [abs(r["error"]) for r in regular if "vs d/2" not in r["name"]]
        lines += [
            "**Regular models** (linear regression at its minimizer; exact: the localized posterior's closed "
            "form, and d/2 for the slope):",
            "",
            *table(regular),
            "",
            f"against the closed forms (the d/2 rows aside): median |error| "
            f"{statistics.median(abs_err):.1%}, max {max(abs_err):.1%}; max |z| "
            f"{max(abs(r['z']) for r in regular if 'vs d/2' not in r['name']):.1f}.",
            "",
        ]
    if dln:
        abs_err = [abs(r["error"]) for r in dln]
        lines += [
            "**2-layer DLNs** (`llc_multitemperature` against Aoyagi's λ):",
            "",
            *table(dln),
            "",
            f"median |error| {statistics.median(abs_err):.1%}, max {max(abs_err):.1%}.",
            "",
        ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section(SECTION, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
