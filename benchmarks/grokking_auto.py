"""A grokking-style run tracked with no hand-chosen sampling hyperparameter (issue #11, "done when").

An NNX MLP on modular addition (a + b mod p, one-hot inputs, a fraction of the p² pairs for training) trained
with AdamW until the test accuracy jumps, tracked by ``LLCTracker(step_size="auto", localization="auto")``: the
tracker keeps the parameters at each record and, at the end, chooses γ and ε once (at the last record) and
estimates every record with them. Prints the records with their health, writes the figure
``benchmarks/figures/grokking_auto.png`` and, with ``--write``, a section of benchmarks/RESULTS.md.

    python benchmarks/grokking_auto.py --write
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import slt

try:
    from benchmarks._results import write_section
except ImportError:  # run as a script from benchmarks/
    from _results import write_section

FIGURES = Path(__file__).resolve().parent / "figures"


class MLP(nnx.Module):
    def __init__(self, p: int, hidden: int, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(2 * p, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, p, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.hidden(x)))


def modular_addition(p: int, train_fraction: float, seed: int):
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    a, b = a.ravel(), b.ravel()
    x = np.concatenate([np.eye(p)[a], np.eye(p)[b]], axis=1).astype(np.float32)
    y = (a + b) % p
    order = np.random.default_rng(seed).permutation(p * p)
    cut = int(train_fraction * p * p)
    train, test = order[:cut], order[cut:]
    return (jnp.asarray(x[train]), jnp.asarray(y[train])), (jnp.asarray(x[test]), jnp.asarray(y[test]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--p", type=int, default=23)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--train-fraction", type=float, default=0.6)
    parser.add_argument("--steps", type=int, default=16000)
    parser.add_argument("--every", type=int, default=800)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-budget", type=float, default=600.0, help="seconds for the one choice of γ and ε")
    parser.add_argument(
        "--bias-tolerance", type=float, default=slt.calibration.BIAS_TOLERANCE, help="the step rule's tolerance"
    )
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    train, test = modular_addition(args.p, args.train_fraction, args.seed)
    model = MLP(args.p, args.hidden, nnx.Rngs(args.seed))
    optimizer = nnx.Optimizer(model, optax.adamw(args.lr, weight_decay=args.weight_decay), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer):
        grads = nnx.grad(lambda m: slt.losses.cross_entropy(m(train[0]), train[1]))(model)
        optimizer.update(model, grads)

    @nnx.jit
    def accuracy(model, x, y):
        return jnp.mean(jnp.argmax(model(x), axis=-1) == y)

    tracker = slt.callbacks.LLCTracker(
        model,
        train,
        loss=slt.losses.cross_entropy,
        key=jax.random.key(args.seed),
        every=args.every,
        step_size="auto",
        localization="auto",
        time_budget=args.time_budget,
        bias_tolerance=args.bias_tolerance,
    )
    start = time.perf_counter()
    accs = []
    for step in range(args.steps + 1):
        tracker(step, model)
        if step % args.every == 0:
            accs.append((float(accuracy(model, *train)), float(accuracy(model, *test))))
        train_step(model, optimizer)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traj = tracker.trajectory()
    sample_seconds = time.perf_counter() - start
    auto = traj.auto
    print(auto.describe())
    print(auto.localization_choice.summary())
    print(traj.summary())
    accs = np.array(accs)
    for w in caught:
        print("warning:", str(w.message)[:300])

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, constrained_layout=True)
    ax.errorbar(traj.steps, traj.llc_mean, 2 * traj.llc_mcse, marker="o", ms=3, color="tab:blue", label="LLC")
    if traj.failing.any():
        ax.plot(
            traj.steps[traj.failing], traj.llc_mean[traj.failing], "x", color="tab:red", ms=8, label="fails a check"
        )
    ax.set_ylabel("$\\hat\\lambda$ (auto γ and ε, chosen once)")
    ax.legend(fontsize=8)
    ax2.plot(traj.steps, accs[:, 0], label="train accuracy")
    ax2.plot(traj.steps, accs[:, 1], label="test accuracy")
    twin = ax2.twinx()
    twin.semilogy(traj.steps, traj.init_loss, color="tab:gray", lw=1, label="train loss")
    twin.set_ylabel("train loss", color="tab:gray")
    ax2.set_xlabel("training step")
    ax2.set_ylabel("accuracy")
    ax2.legend(fontsize=8, loc="center right")
    fig.suptitle(
        f"modular addition p={args.p}, MLP {2 * args.p}-{args.hidden}-{args.p}, AdamW; "
        f"γ = {auto.localization:.3g}, ε = {auto.step_size:.2g}"
    )
    FIGURES.mkdir(exist_ok=True)
    fig.savefig(FIGURES / "grokking_auto.png", dpi=110)

    rows = [
        "| step | train acc | test acc | train loss | λ̂ | MCSE | R-hat | ESS | draws | continued | health |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for k in range(len(traj)):
        rows.append(
            f"| {traj.steps[k]} | {accs[k, 0]:.2f} | {accs[k, 1]:.2f} | {traj.init_loss[k]:.3g} | "
            f"{traj.llc_mean[k]:.4g} | "
            f"{traj.llc_mcse[k]:.2g} | {traj.rhat[k]:.3f} | {traj.ess[k]:.0f} | {traj.results[k].num_draws} | "
            f"{len(traj.results[k].extensions)} | "
            f"{'fails: ' + traj.results[k].warnings[0][:100] if traj.failing[k] else 'ok'} |"
        )
    tolerance_flag = (
        "" if args.bias_tolerance == slt.calibration.BIAS_TOLERANCE else f" --bias-tolerance {args.bias_tolerance:g}"
    )
    text = (
        f"Run {datetime.date.today()} on {platform.machine()} ({jax.default_backend()}, JAX {jax.__version__}): "
        f"`python benchmarks/grokking_auto.py --time-budget {args.time_budget:g}"
        f"{tolerance_flag}"
        f"{' --write' if args.write else ''}`. "
        f"Training {train_seconds:.0f} s, "
        f"LLC for all {len(traj)} records {sample_seconds:.0f} s (one choice, at step {traj.reference_step}).\n\n"
        f"{auto.describe()}\n\n```\n{auto.localization_choice.summary()}\n```\n\n"
        + "\n".join(rows)
        + f"\n\n{int(traj.failing.sum())} of {len(traj)} records fail a health check; "
        f"{sum(bool(r.extensions) for r in traj.results)} were continued from their final state "
        "(with the other failing records of their batch of 8; a record that passes is left as it is). "
        "Figure: `benchmarks/figures/grokking_auto.png`.\n"
    )
    print(text)
    if args.write:
        write_section("A grokking-style run with auto γ and ε (issue #11)", text)


if __name__ == "__main__":
    main()
