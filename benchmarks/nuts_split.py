r"""Split the error of an SGLD LLC estimate into sampler error and finite-nβ effect, with NUTS as ground truth.

For a few small deep linear networks (``slt.models.deep_linear_network``, n = 10 000, w* the rank-r
minimizer) three numbers at the same nβ = n/log n and γ = 1:

* λ, Aoyagi's learning coefficient (``problem.true_llc``);
* λ̂_NUTS, :func:`slt.ground_truth.nuts_llc`: the exact expectation nβ(E[L_n] − L_n(w*)) under the localized
  tempered posterior, up to its (reported) Monte-Carlo error;
* λ̂_SGLD, :func:`slt.estimate_llc` at the settings of ``benchmarks/dln_accuracy.py`` (ε = 2e-6, batch 100,
  4 chains, 10 000 burn-in + 40 000 draws), or another ``--sampler`` / ``--step-size``.

Then λ̂_SGLD − λ = (λ̂_SGLD − λ̂_NUTS) + (λ̂_NUTS − λ): *sampler error* (step size, minibatch noise, too few
steps) plus the *finite-nβ effect* (the posterior at this temperature is not yet in its asymptotic regime:
lower-order terms of the free energy, multiplicity, the localization γ). Only the first can be fixed by a
better sampler.

NUTS evaluates L_n through the data's second moments (``DLNMomentLoss``): for squared error,
L_n(W) = ½[tr(P Σ_xx Pᵀ) − 2 tr(P Σ_yx) + mean‖y‖²] with P = W_L⋯W_1, exactly the mean loss over the data
(``nuts_llc`` checks it), at O(widths³) instead of O(n · widths²) per gradient.

    python benchmarks/nuts_split.py                  # the table
    python benchmarks/nuts_split.py --draws 10000    # a shorter SGLD run
    python benchmarks/nuts_split.py --write          # and the section in benchmarks/RESULTS.md
    python benchmarks/nuts_split.py --sampler sghmc --step-size 1e-6 --write
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import slt
from slt.ground_truth import nuts_llc

try:
    from benchmarks._results import write_section
except ImportError:  # run as a script from benchmarks/
    from _results import write_section

HEADING = "Sampler error vs finite-nβ effect (NUTS)"

# (widths, rank): 2-3 layers, small enough for NUTS on two CPU cores; the first four have the largest
# SGLD errors among the 2-3-layer nets of the accuracy table.
CONFIGS = [
    ([5, 3, 5], 0),
    ([4, 3, 8], 0),
    ([3, 4, 5, 6], 1),
    ([10, 15, 15, 10], 3),
    ([8, 6, 4], 2),
    ([10, 5, 10], 2),
    ([5, 5, 5, 5, 5], 2),  # 4 and 5 layers: the largest errors of the accuracy table (m = 4, 7)
    ([6, 8, 8, 8, 8, 6], 2),
]


class DLNMomentLoss:
    """Mean squared-error loss of a DLN over a data set, from the data's second moments (float64 numpy)."""

    def __init__(self, data, noise_std: float = 1.0):
        x, y = (np.asarray(a, np.float64) for a in data)
        n = x.shape[0]
        self.sxx = x.T @ x / n
        self.syx = y.T @ x / n
        self.syy = float(np.mean(np.sum(y * y, axis=1)))
        self.scale = 0.5 / noise_std**2

    def __call__(self, params):
        product = params[0]
        for w in params[1:]:
            product = w @ product
        quad = jnp.sum((product @ self.sxx) * product)
        return self.scale * (quad - 2.0 * jnp.sum(product * self.syx) + self.syy)


NUTS_FIELDS = ("nuts", "nuts_mcse", "nuts_rhat", "nuts_div", "nuts_depth", "nuts_seconds")


def nuts_cache_key(widths, rank, args) -> str:
    """Everything the NUTS value depends on (the SGLD-family settings do not enter)."""
    return (
        f"{'-'.join(map(str, widths))} r{rank} n={args.num_data} seed={args.seed} gamma={args.localization:g} "
        f"chains={args.num_chains} warmup={args.nuts_warmup} samples={args.nuts_samples} "
        f"accept={args.target_accept:g} dense={args.dense_mass} depth={args.max_tree_depth}"
    )


def run_nuts(problem, args) -> dict:
    start = time.perf_counter()
    nuts = nuts_llc(
        problem.loss_fn,
        problem.params,
        problem.data,
        key=jax.random.key(args.seed),
        localization=args.localization,
        num_chains=args.num_chains,
        num_burnin=args.nuts_warmup,
        num_draws=args.nuts_samples,
        target_accept_prob=args.target_accept,
        dense_mass=args.dense_mass,
        max_tree_depth=args.max_tree_depth,
        full_loss=DLNMomentLoss(problem.data),
    )
    return dict(
        nuts=float(nuts.llc_mean),
        nuts_mcse=float(nuts.llc_mcse),
        nuts_rhat=float(nuts.rhat),
        nuts_div=int(np.sum(nuts.sampler_stats["diverging"])),
        nuts_depth=float(np.mean(nuts.sampler_stats["tree_depth"])),
        nuts_seconds=time.perf_counter() - start,
        nbeta=float(nuts.nbeta),
    )


def run_one(widths, rank, args, cache: dict) -> dict:
    problem = slt.models.deep_linear_network(widths, rank, num_data=args.num_data, seed=args.seed)
    lam = float(problem.true_llc)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        key = nuts_cache_key(widths, rank, args)
        nuts = cache.get(key) if args.nuts_cache else None
        if nuts is None:
            nuts = run_nuts(problem, args)
            if args.nuts_cache:
                cache[key] = {**nuts, "date": str(datetime.date.today()), "jax": jax.__version__}
                Path(args.nuts_cache).write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")
        else:
            print(f"  NUTS for {key} reused from {args.nuts_cache} (run {nuts.get('date')})", file=sys.stderr)
        start = time.perf_counter()
        sgld = slt.estimate_llc(
            problem.loss_fn,
            problem.params,
            problem.data,
            key=jax.random.key(args.seed),
            step_size=args.step_size,
            sampler=args.sampler,
            num_chains=args.num_chains,
            **(
                {}  # auto: burn-in, draws and batch size at estimate_llc's defaults
                if args.step_size == "auto"
                else dict(num_draws=args.draws, num_burnin=args.burnin, batch_size=args.batch_size)
            ),
            localization=args.localization,
        )
        sgld_seconds = time.perf_counter() - start
    for w in caught:
        print(f"  warning ({'-'.join(map(str, widths))}): {w.message}", file=sys.stderr)
    assert np.isclose(sgld.nbeta, nuts["nbeta"]), "both must sample the same posterior"
    return dict(
        widths="-".join(map(str, widths)),
        layers=len(widths) - 1,
        rank=rank,
        d=problem.num_parameters,
        lam=lam,
        m=problem.multiplicity,
        **{k: nuts[k] for k in NUTS_FIELDS},
        sgld=sgld.llc_mean,
        sgld_step=sgld.step_size,
        sgld_mcse=sgld.llc_mcse,
        sgld_rhat=sgld.rhat,
        total=(sgld.llc_mean - lam) / lam,
        sampler_err=(sgld.llc_mean - nuts["nuts"]) / lam,
        sampler_se=float(np.hypot(sgld.llc_mcse, nuts["nuts_mcse"])) / lam,
        finite=(nuts["nuts"] - lam) / lam,
        finite_se=nuts["nuts_mcse"] / lam,
        sgld_seconds=sgld_seconds,
    )


def header(sampler: str) -> str:
    s = sampler.upper() if sampler == "sgld" else sampler
    return (
        f"| widths | L | r | d | λ (m) | NUTS λ̂ ± MCSE | {s} λ̂ ± MCSE | total error | "
        f"sampler error ({s} − NUTS) | finite-nβ effect (NUTS − λ) | NUTS R-hat, div., depth | "
        f"seconds NUTS | seconds {s} |\n" + "|---" * 13 + "|"
    )


def format_row(r: dict) -> str:
    return (
        f"| {r['widths']} | {r['layers']} | {r['rank']} | {r['d']} | {r['lam']:g} ({r['m']}) | "
        f"{r['nuts']:.2f} ± {r['nuts_mcse']:.2f} | {r['sgld']:.2f} ± {r['sgld_mcse']:.2f} (ε {r['sgld_step']:.2g}) | "
        f"{r['total']:+.1%} | "
        f"{r['sampler_err']:+.1%} ± {r['sampler_se']:.1%} | {r['finite']:+.1%} ± {r['finite_se']:.1%} | "
        f"{r['nuts_rhat']:.3f}, {r['nuts_div']}, {r['nuts_depth']:.1f} | {r['nuts_seconds']:.0f} | "
        f"{r['sgld_seconds']:.0f} |"
    )


def _step_size(text: str):
    return text if text == "auto" else float(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sampler", default="sgld", help="sampler name for slt.estimate_llc")
    parser.add_argument("--step-size", type=_step_size, default=2e-6, help="a number or 'auto'")
    parser.add_argument("--draws", type=int, default=40_000, help="kept draws per chain of the SGLD-family run")
    parser.add_argument("--burnin", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--num-chains", type=int, default=4)
    parser.add_argument("--nuts-warmup", type=int, default=1000)
    parser.add_argument("--nuts-samples", type=int, default=2000)
    parser.add_argument("--target-accept", type=float, default=0.9, help="NUTS target acceptance")
    parser.add_argument("--dense-mass", action="store_true", help="NUTS with a dense mass matrix")
    parser.add_argument("--max-tree-depth", type=int, default=10)
    parser.add_argument("--localization", type=float, default=1.0)
    parser.add_argument("--num-data", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--nuts-cache",
        default=str(Path(__file__).with_name("nuts_reference.json")),
        help="JSON file of NUTS results, reused when every NUTS setting matches ('' to always rerun)",
    )
    parser.add_argument("--only", type=int, nargs="*", help="indices into CONFIGS")
    parser.add_argument("--label", default=None, help="suffix of the RESULTS.md heading")
    parser.add_argument("--note", default="", help="text put under the table")
    parser.add_argument("--write", action="store_true", help="write the section into benchmarks/RESULTS.md")
    args = parser.parse_args(argv)

    configs = CONFIGS if args.only is None else [CONFIGS[i] for i in args.only]
    cache = json.loads(Path(args.nuts_cache).read_text()) if args.nuts_cache and Path(args.nuts_cache).exists() else {}
    print(header(args.sampler), flush=True)
    start = time.perf_counter()
    rows = []
    for widths, rank in configs:
        rows.append(run_one(widths, rank, args, cache))
        print(format_row(rows[-1]), flush=True)
    total = time.perf_counter() - start
    print(f"total {total:.0f} s")
    if args.write:
        label = args.label or (None if args.sampler == "sgld" else args.sampler)
        heading = HEADING if label is None else f"{HEADING}: {label}"
        settings = (
            f"n = {args.num_data}, nβ = n/log n, γ = {args.localization:g}, w* the rank-r minimizer, seed "
            f"{args.seed}. NUTS (`slt.ground_truth.nuts_llc`, float64, full-data potential via the data's "
            f"second moments): {args.num_chains} chains × {args.nuts_samples} draws after {args.nuts_warmup} "
            f"warmup, target acceptance {args.target_accept:g}, {'dense' if args.dense_mass else 'diagonal'} "
            f"mass matrix, max tree depth {args.max_tree_depth}. "
            + (
                f'{args.sampler}: `estimate_llc(step_size="auto")` with every other argument at its default '
                f"({args.num_chains} chains; batch, burn-in and draws chosen by it; paired estimator)."
                if args.step_size == "auto"
                else f"{args.sampler}: ε = {args.step_size:g}, batch {args.batch_size}, {args.num_chains} chains × "
                f"{args.draws} draws after {args.burnin} burn-in (paired estimator)."
            )
        )
        shown = list(sys.argv[1:])
        if "--note" in shown:  # the note is printed below the table; the command line only marks it
            i = shown.index("--note")
            shown[i : i + 2] = ["--note", "..."]
        command = "python " + " ".join(["benchmarks/nuts_split.py", *shown])
        body = "\n".join(
            [
                settings,
                "",
                f"Run {datetime.date.today()} on {platform.machine()} CPU ({jax.devices()[0].platform}, JAX "
                f"{jax.__version__}), total {total:.0f} s: `{command}`",
                "",
                "NUTS results are cached in `benchmarks/nuts_reference.json` (keyed by every NUTS setting, with "
                "the date of the run) and reused by later runs with the same NUTS settings. "
                "Errors are relative to λ; total = sampler error + finite-nβ effect. ± is one Monte-Carlo standard "
                "error (ArviZ MCSE of the λ̂ trace; both runs' combined for the sampler error). NUTS columns: R-hat, "
                "divergent transitions among the kept draws, mean tree depth.",
                "",
                header(args.sampler),
                *[format_row(r) for r in rows],
                "",
                args.note,
            ]
        )
        write_section(heading, body)


if __name__ == "__main__":
    main()
