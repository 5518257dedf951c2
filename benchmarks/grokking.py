"""Grokking on modular addition: LLC, weight norm, Adam's effective step, accuracies, essential dynamics (issue #13 §4).

The MLP and data of ``benchmarks/grokking_auto.py`` (a + b mod p, one-hot inputs, a fraction of the p² pairs for
training; an NNX MLP trained with full-batch AdamW) are trained until the test accuracy jumps. One
``slt.callbacks.LLCTracker(step_size="auto", localization="auto")`` records, every ``--every`` steps:
the parameters (the LLC of every record is estimated at the end with ε, γ and nβ chosen **once**, at the last
record), the weight norm in total and per layer, the effective step ‖Δw‖/‖w‖ per optimizer step between
records (net displacement: the optimizer's update is not passed), the full-batch training loss, and the
logits on a fixed probe set (all p² pairs). Afterwards:

* essential dynamics (``slt.dynamics.essential_dynamics``) of the probe logits, with the random-walk test
  (``slt.dynamics.lissajous_diagnostic``: the persistence verdict, the Lissajous statistic beside it) and
  where PC2's extremum falls, along PC1 and in time;
* stages (``slt.dynamics.detect_stages``) of the LLC, of log train loss and of the test accuracy, and the
  turns of the PC1–PC2 curve (``detect_turns``);
* the test-accuracy jump: the steps where the test accuracy first reaches 10 %, 50 % and 90 %, and the LLC
  (± MCSE) there.

``--contrast-weight-decay 0`` repeats the whole run with that weight decay (its own auto choice), to see how
the norm and the LLC move when nothing pulls the norm down. Prints a table per run and writes the figures
``benchmarks/figures/grokking.png`` (and ``grokking_wd<...>.png``) and ``grokking_essential.png``; with
``--write``, the section "Grokking: LLC, weight norm and essential dynamics (issue #13)" of RESULTS.md.

    python benchmarks/grokking.py --contrast-weight-decay 0 --write
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
    from benchmarks.grokking_auto import MLP, modular_addition
except ImportError:  # run as a script from benchmarks/
    from _results import write_section
    from grokking_auto import MLP, modular_addition

FIGURES = Path(__file__).resolve().parent / "figures"
HEADING = "Grokking: LLC, weight norm and essential dynamics (issue #13)"


def first_reach(steps, values, level):
    """The first step at which ``values`` reaches ``level`` (None if never)."""
    hit = np.flatnonzero(np.asarray(values) >= level)
    return int(steps[hit[0]]) if hit.size else None


def setup(p: int, hidden: int, train_fraction: float, seed: int, lr: float, weight_decay: float):
    """The run's pieces: train and test sets, the probe (one-hot inputs of all p² pairs), the MLP, its AdamW
    optimizer and a jitted full-batch training step ``train_step(model, optimizer)``."""
    train, test = modular_addition(p, train_fraction, seed)
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    probe = jnp.asarray(np.concatenate([np.eye(p)[a.ravel()], np.eye(p)[b.ravel()]], axis=1), dtype=jnp.float32)
    model = MLP(p, hidden, nnx.Rngs(seed))
    optimizer = nnx.Optimizer(model, optax.adamw(lr, weight_decay=weight_decay), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer):
        grads = nnx.grad(lambda m: slt.losses.cross_entropy(m(train[0]), train[1]))(model)
        optimizer.update(model, grads)

    return train, test, probe, model, optimizer, train_step


def run(args, weight_decay: float) -> dict:
    """Train one configuration with the tracker; everything measured, as a dict."""
    train, test, probe, model, optimizer, train_step = setup(
        args.p, args.hidden, args.train_fraction, args.seed, args.lr, weight_decay
    )

    @nnx.jit
    def accuracy(model, x, y):
        return jnp.mean(jnp.argmax(model(x), axis=-1) == y)

    if args.step_size is None:
        settings = dict(step_size="auto", localization="auto", time_budget=args.time_budget)
    else:  # fixed settings (e.g. those an auto run chose), estimated at each record as training goes
        settings = dict(
            step_size=args.step_size,
            localization=args.localization,
            nbeta=args.nbeta,
            num_burnin=args.num_burnin,
            num_draws=args.num_draws,
        )
    tracker = slt.callbacks.LLCTracker(
        model,
        train,
        loss=slt.losses.cross_entropy,
        key=jax.random.key(args.seed),
        every=args.every,
        probe=probe,
        **settings,
    )
    start = time.perf_counter()
    accs = []
    for step in range(args.steps + 1):
        if step % args.every == 0:
            tracker(step, model)
            accs.append((float(accuracy(model, *train)), float(accuracy(model, *test))))
        train_step(model, optimizer)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traj = tracker.trajectory()
    sample_seconds = time.perf_counter() - start
    accs = np.array(accs)
    steps = traj.steps.astype(float)
    outputs = tracker.outputs()  # (R, p², p) logits on every pair

    start = time.perf_counter()
    ed = slt.dynamics.essential_dynamics(outputs, n_components=3, smoothing=1.5, steps=steps)
    liss = slt.dynamics.lissajous_diagnostic(outputs, num_surrogates=199, seed=args.seed)
    turns = ed.detect_turns((0, 1))
    stages = {
        "LLC": slt.dynamics.detect_stages(traj.llc_mean, steps),
        "log train loss": slt.dynamics.detect_stages(np.log(traj.init_loss), steps),
        "test accuracy": slt.dynamics.detect_stages(accs[:, 1], steps),
    }
    analysis_seconds = time.perf_counter() - start
    return dict(
        weight_decay=weight_decay,
        traj=traj,
        accs=accs,
        ed=ed,
        liss=liss,
        turns=turns,
        stages=stages,
        warnings=[str(w.message) for w in caught],
        seconds=(train_seconds, sample_seconds, analysis_seconds),
        jump={level: first_reach(traj.steps, accs[:, 1], level) for level in (0.1, 0.5, 0.9)},
    )


def llc_at(traj, step):
    if step is None:
        return "never"
    k = int(np.flatnonzero(traj.steps == step)[0])
    return f"{traj.llc_mean[k]:.1f} ± {traj.llc_mcse[k]:.1f}"


def describe_settings(traj, args) -> str:
    if traj.auto is not None:
        return f"{traj.auto.describe()} (one auto choice at step {traj.reference_step})"
    return (
        f"fixed settings: ε = {args.step_size:g}, γ = {args.localization:g}, nβ = {args.nbeta:g}, "
        f"burn-in {args.num_burnin}, draws {args.num_draws}, 4 chains"
    )


def report(r, args) -> str:
    """Markdown for one configuration: settings, jump, norms, ED, stages, a table of every other record."""
    traj, accs, liss, ed = r["traj"], r["accs"], r["liss"], r["ed"]
    train_s, sample_s, analysis_s = r["seconds"]
    groups = traj.group_norms
    k_max = int(np.argmax(traj.llc_mean))
    lines = [
        f"**AdamW weight decay {r['weight_decay']:g}.** "
        + (
            f"Training {train_s:.0f} s, LLC of all {len(traj)} records {sample_s:.0f} s"
            if traj.auto is not None
            else f"Training with the LLC estimated at each of the {len(traj)} records {train_s:.0f} s"
        )
        + f", analysis {analysis_s:.0f} s. {describe_settings(traj, args)}.",
        "",
        f"- Test accuracy first reaches 10 % / 50 % / 90 % at steps {r['jump'][0.1]} / {r['jump'][0.5]} / "
        f"{r['jump'][0.9]} (train accuracy 100 % from step {first_reach(traj.steps, accs[:, 0], 1.0)}); LLC there "
        f"{llc_at(traj, r['jump'][0.1])} / {llc_at(traj, r['jump'][0.5])} / {llc_at(traj, r['jump'][0.9])}; "
        f"largest LLC {traj.llc_mean[k_max]:.1f} at step {traj.steps[k_max]}, last {traj.llc_mean[-1]:.1f} ± "
        f"{traj.llc_mcse[-1]:.1f}; final test accuracy {accs[-1, 1]:.2f}.",
        f"- Weight norm ‖w‖₂: {traj.weight_norm[0]:.1f} at step 0, largest {traj.weight_norm.max():.1f} at step "
        f"{traj.steps[int(np.argmax(traj.weight_norm))]}, {traj.weight_norm[-1]:.1f} at the end; per layer "
        + ", ".join(f"{g} {v[0]:.1f} → {v.max():.1f} (max) → {v[-1]:.1f}" for g, v in groups.items())
        + f". Effective step ‖Δw‖/‖w‖ per step: {np.nanmax(traj.effective_step):.2g} at most "
        f"(step {traj.steps[int(np.nanargmax(traj.effective_step))]}), {traj.effective_step[-1]:.2g} at the end.",
        f"- Essential dynamics of the logits on all {args.p**2} pairs: explained variance "
        + ", ".join(f"PC{i + 1} {100 * v:.1f} %" for i, v in enumerate(ed.explained_variance_ratio))
        + f". Random-walk test: {'random-walk-like' if liss.random_walk_like else 'NOT random-walk-like'} "
        f"(persistence p = {liss.persistence_p_value:.3g}, Lissajous-statistic p = {liss.lissajous_p_value:.3g}, "
        f"B = {liss.num_surrogates}); PC1 a clock: {liss.developmental_clock} "
        f"(|Spearman| {abs(liss.pc1_spearman):.2f}); "
        f"PC2 extremum at {liss.pc2_extremum_position:.2f} of PC1's range and {liss.pc2_extremum_time:.2f} of the "
        f"time span (step ≈ {traj.steps[0] + liss.pc2_extremum_time * (traj.steps[-1] - traj.steps[0]):.0f}); "
        f"turns of the PC1–PC2 curve at steps {', '.join(f'{s:.0f}' for s in r['turns'].positions) or 'none'}.",
        "- Stages (`detect_stages`): "
        + "; ".join(
            f"{name}: " + ", ".join(f"{kind} {s0:.0f}–{s1:.0f}" for s0, s1, kind in st.stages)
            for name, st in r["stages"].items()
        )
        + ".",
        f"- Health: {int(traj.failing.sum())} of {len(traj)} records fail a check.",
        "",
        "| step | train acc | test acc | train loss | λ̂ ± MCSE | ‖w‖₂ | "
        + " | ".join(f"‖w_{g}‖" for g in groups)
        + " | ‖Δw‖/‖w‖ per step | ok |",
        "|---|---|---|---|---|---|" + "---|" * len(groups) + "---|---|",
    ]
    show = sorted(set(range(0, len(traj), args.table_stride)) | {len(traj) - 1})
    for k in show:
        lines.append(
            f"| {traj.steps[k]} | {accs[k, 0]:.2f} | {accs[k, 1]:.2f} | {traj.init_loss[k]:.3g} | "
            f"{traj.llc_mean[k]:.1f} ± {traj.llc_mcse[k]:.1f} | {traj.weight_norm[k]:.1f} | "
            + " | ".join(f"{v[k]:.1f}" for v in groups.values())
            + f" | {traj.effective_step[k]:.2g} | {'no' if traj.failing[k] else 'yes'} |"
        )
    return "\n".join(lines)


def figure(r, args, path):
    import matplotlib.pyplot as plt

    traj, accs = r["traj"], r["accs"]
    fig, (ax, ax2, ax3) = plt.subplots(
        3, 1, figsize=(7.5, 8), sharex=True, constrained_layout=True, height_ratios=(2, 1.4, 1)
    )
    ax.errorbar(traj.steps, traj.llc_mean, 2 * traj.llc_mcse, marker="o", ms=2.5, color="tab:blue", lw=1)
    if traj.failing.any():
        ax.plot(
            traj.steps[traj.failing], traj.llc_mean[traj.failing], "x", color="tab:red", ms=7, label="fails a check"
        )
        ax.legend(fontsize=8, loc="lower right")
    ax.set_ylabel("LLC $\\hat\\lambda$ (± 2 MCSE)", color="tab:blue")
    twin = ax.twinx()
    twin.plot(traj.steps, traj.weight_norm, color="tab:orange", lw=1.8, label="$\\|w\\|_2$ total")
    for name, norm in traj.group_norms.items():
        twin.plot(traj.steps, norm, ls="--", lw=1, label=name)
    twin.set_ylabel("weight norm", color="tab:orange")
    twin.legend(fontsize=8, loc="center right")
    for level in (0.1, 0.5, 0.9):
        if r["jump"][level] is not None:
            for a in (ax, ax2, ax3):
                a.axvline(r["jump"][level], color="0.6", ls=":", lw=1)
    ax2.plot(traj.steps, accs[:, 0], label="train accuracy")
    ax2.plot(traj.steps, accs[:, 1], label="test accuracy")
    ax2.set_ylabel("accuracy")
    ax2.legend(fontsize=8, loc="center right")
    loss_ax = ax2.twinx()
    loss_ax.semilogy(traj.steps, traj.init_loss, color="tab:gray", lw=1)
    loss_ax.set_ylabel("train loss", color="tab:gray")
    ax3.semilogy(traj.steps, traj.effective_step, color="tab:orange", marker=".", lw=1, label="total")
    for name, ratio in traj.group_effective_step.items():
        ax3.semilogy(traj.steps, ratio, ls="--", lw=1, label=name)
    ax3.set_ylabel("$\\|\\Delta w\\|/\\|w\\|$ per step")
    ax3.set_xlabel("training step (dotted: test accuracy reaches 10 %, 50 %, 90 %)")
    ax3.legend(fontsize=8)
    fig.suptitle(
        f"modular addition p={args.p}, MLP {2 * args.p}-{args.hidden}-{args.p}, AdamW lr {args.lr:g}, "
        f"weight decay {r['weight_decay']:g}; "
        + (
            f"γ = {traj.auto.localization:.3g}, ε = {traj.auto.step_size:.2g}"
            if traj.auto is not None
            else f"γ = {args.localization:.3g}, ε = {args.step_size:.2g} (fixed)"
        ),
        fontsize=10,
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)


def essential_figure(r, path):
    import matplotlib.pyplot as plt

    fig = r["ed"].plot()
    liss = r["liss"]
    fig.suptitle(
        f"essential dynamics of the probe logits (weight decay {r['weight_decay']:g}); persistence test p = "
        f"{liss.persistence_p_value:.3g}, PC2 extremum at {liss.pc2_extremum_position:.2f} of PC1",
        fontsize=10,
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--p", type=int, default=23)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--train-fraction", type=float, default=0.6)
    parser.add_argument("--steps", type=int, default=16000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=1.0)
    parser.add_argument("--contrast-weight-decay", type=float, default=None, help="a second run with this decay")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-budget", type=float, default=300.0, help="seconds for each run's choice of γ and ε")
    parser.add_argument("--step-size", type=float, default=None, help="fixed ε instead of 'auto' (then also:)")
    parser.add_argument("--localization", type=float, default=None)
    parser.add_argument("--nbeta", type=float, default=None)
    parser.add_argument("--num-burnin", type=int, default=None)
    parser.add_argument("--num-draws", type=int, default=None)
    parser.add_argument("--table-stride", type=int, default=4, help="table rows: every this many records")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    FIGURES.mkdir(exist_ok=True)
    start = time.perf_counter()
    decays = [args.weight_decay] + ([args.contrast_weight_decay] if args.contrast_weight_decay is not None else [])
    sections = []
    for i, wd in enumerate(decays):
        r = run(args, wd)
        name = "grokking.png" if i == 0 and wd == 1.0 else f"grokking_wd{wd:g}.png"
        figure(r, args, FIGURES / name)
        essential_figure(r, FIGURES / name.replace("grokking", "grokking_essential"))
        text = report(r, args)
        if r["traj"].auto is not None:
            print(r["traj"].auto.localization_choice.summary(), flush=True)
        print(text, flush=True)
        for w in r["warnings"]:
            print("warning:", w[:300], flush=True)
        sections.append(
            text
            + f"\n\nFigure: `benchmarks/figures/{name}`"
            + f" and `benchmarks/figures/{name.replace('grokking', 'grokking_essential')}`."
        )
    total = time.perf_counter() - start
    fixed = (
        f" --step-size {args.step_size:g} --localization {args.localization:g} --nbeta {args.nbeta:g} "
        f"--num-burnin {args.num_burnin} --num-draws {args.num_draws}"
        if args.step_size is not None
        else ""
    )
    command = (
        f"python benchmarks/grokking.py --weight-decay {args.weight_decay:g} --every {args.every} "
        f"--time-budget {args.time_budget:g}{fixed}"
        + (f" --contrast-weight-decay {args.contrast_weight_decay:g}" if args.contrast_weight_decay is not None else "")
        + (" --write" if args.write else "")
    )
    body = (
        f"Run {datetime.date.today()} on {platform.machine()} ({jax.default_backend()}, JAX {jax.__version__}), "
        f"total {total:.0f} s: `{command}`. p = {args.p}, MLP {2 * args.p}-{args.hidden}-{args.p}, train fraction "
        f"{args.train_fraction:g}, full-batch AdamW lr {args.lr:g}, {args.steps} steps, a record every {args.every} "
        "steps; the LLC with "
        + (
            "`step_size='auto', localization='auto'` chosen once per run (at its last record). "
            if not fixed
            else "the fixed settings given. "
        )
        + "Effective step: net displacement between records per optimizer step. Table: every "
        f"{args.table_stride}th record.\n\n" + "\n\n".join(sections)
    )
    if args.write:
        write_section(HEADING, body)


if __name__ == "__main__":
    main()
