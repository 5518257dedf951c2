"""Does NUTS from w* miss a region SGLD visits? Start NUTS where long SGLD chains ended (issue #11, GELU γ = 1).

On a small network of ``benchmarks/_nn_problems.py`` (n = 2000, nβ = n/log n): SGLD, 4 chains, warmed up at
``--warm-step`` for ``--warm-steps`` steps and then run at ``--step`` for ``--steps`` steps (λ̂ printed in windows
of 50,000 steps), then ``slt.ground_truth.nuts_llc`` (4 chains, 500 warm-up + 600 draws, target acceptance 0.9)
started from SGLD's final positions (``init_position``), on the same localized posterior. If NUTS from w* had
missed a region, NUTS from SGLD's positions would read differently. Printed, not written.

    python benchmarks/nuts_from_sgld.py            # GELU MLP at γ = 1, auto's ε (about 10 min on 2 cores)
"""

from __future__ import annotations

import argparse
import time
import warnings

import jax
import numpy as np

import slt

try:
    from benchmarks._nn_problems import make_problem
except ImportError:  # run as a script from benchmarks/
    from _nn_problems import make_problem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problem", default="gelu")
    parser.add_argument("--localization", type=float, default=1.0)
    parser.add_argument("--warm-step", type=float, default=5.24e-5, help="auto's ε_w on GELU γ = 1")
    parser.add_argument("--warm-steps", type=int, default=60_000)
    parser.add_argument("--step", type=float, default=3.28e-6, help="auto's ε on GELU γ = 1")
    parser.add_argument("--steps", type=int, default=300_000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    q = make_problem(args.problem)
    target = slt.targets.make_target(q.loss_fn, q.params32(), q.data32())
    nbeta = float(slt.default_nbeta(target.num_data))
    common = dict(
        example_losses_at_center=slt.targets.per_example_losses(target),
        nbeta=nbeta,
        localization=args.localization,
        num_chains=4,
        batch_size=256,
        observables={"loss_at_center": "loss_at_center"},
    )
    start = time.perf_counter()
    warm = slt.sample(
        target,
        key=jax.random.key(11),
        num_steps=args.warm_steps,
        sampler_params={"step_size": args.warm_step},
        **common,
    )
    run = slt.sample(
        target,
        key=jax.random.key(12),
        num_steps=args.steps,
        sampler_params={"step_size": args.step},
        init_position=warm.final_state.position,
        **common,
    )
    llc = nbeta * (run.loss - run.observables["loss_at_center"])
    print(
        f"SGLD: {args.warm_steps} steps at {args.warm_step:g}, then {args.steps} at {args.step:g} "
        f"({time.perf_counter() - start:.0f} s): λ̂ {llc.mean():.2f}"
    )
    for a in range(0, args.steps, 50_000):
        w = llc[:, a : a + 50_000]
        print(f"  steps {a}-{a + w.shape[1]}: {w.mean():.2f}, per chain {np.round(w.mean(axis=1), 1).tolist()}")
    starts = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), run.final_state.position)
    start = time.perf_counter()
    res = slt.ground_truth.nuts_llc(
        q.loss_fn,
        q.params,
        q.data,
        key=jax.random.key(13),
        localization=args.localization,
        num_chains=4,
        num_burnin=500,
        num_draws=600,
        target_accept_prob=0.9,
        init_position=starts,
    )
    at_start = nbeta * (res.burnin_loss_trace[:, 0] - res.init_loss)
    print(
        f"NUTS from SGLD's final positions (λ̂ there {np.round(at_start, 1).tolist()}; "
        f"{time.perf_counter() - start:.0f} s):"
    )
    print(res.summary())


if __name__ == "__main__":
    main()
