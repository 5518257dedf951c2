"""LLC accuracy on deep linear networks against Aoyagi's closed-form learning coefficient.

Default settings are those of the core issue: SGLD, ε = 2e-6, nβ = n/log n, γ = 1, batch 100, 4 chains,
10 000 burn-in + 40 000 kept draws, n = 10 000, x ~ N(0, I), y = W x + N(0, I), w* the rank-r minimizer
(``slt.models.deep_linear_network``, ``point="minimum"``). Prints a table and, with ``--write``, puts it in
benchmarks/RESULTS.md under ``## Accuracy: <label>``.

    python benchmarks/dln_accuracy.py                       # the default table
    python benchmarks/dln_accuracy.py --point true --write  # w* = generating parameter instead
    python benchmarks/dln_accuracy.py --columns sgld:2e-6 sgld:auto rmsprop_sgld:auto sghmc:auto sgnht:auto --write

With ``--columns``, each column is ``sampler:step`` (a number, or ``auto`` for ``step_size="auto"`` with
every other argument at its default: batch size, burn-in and draws chosen by the library), and the table
has λ̂ and its relative error per column, then the median and max |error| and the seconds per column.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import jax

import slt

try:
    from benchmarks._results import write_section
except ImportError:  # run as a script from benchmarks/
    from _results import write_section

# (widths, rank): 2-5 layers, widths 3-30, ranks 0..6
CONFIGS = [
    ([5, 3, 5], 0),
    ([4, 3, 8], 0),
    ([8, 6, 4], 2),
    ([10, 5, 10], 2),
    ([12, 8, 6], 4),
    ([10, 20, 10], 5),
    ([20, 10, 30], 3),
    ([3, 4, 5, 6], 1),
    ([10, 15, 15, 10], 3),
    ([10, 20, 20, 10], 5),
    ([5, 5, 5, 5, 5], 2),
    ([8, 12, 12, 12, 8], 4),
    ([6, 8, 8, 8, 8, 6], 2),
    ([10, 10, 10, 10, 10, 10], 5),
]


def run(args) -> list[dict]:
    rows = []
    configs = CONFIGS if not args.only else [CONFIGS[i] for i in args.only]
    for widths, rank in configs:
        problem = slt.models.deep_linear_network(widths, rank, num_data=args.num_data, seed=args.seed, point=args.point)
        lam = float(problem.true_llc)
        start = time.perf_counter()
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
            localization=args.localization,
        )
        seconds = time.perf_counter() - start
        row = dict(
            widths="-".join(map(str, widths)),
            layers=len(widths) - 1,
            rank=rank,
            d=problem.num_parameters,
            lam=lam,
            m=problem.multiplicity,
            est=res.llc_mean,
            std=res.llc_std,
            rel=(res.llc_mean - lam) / lam,
            rhat=res.rhat,
            seconds=seconds,
        )
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


HEADER = (
    "| widths | L | r | d | λ (m) | λ̂ ± std | rel. error | R-hat | seconds |\n|---|---|---|---|---|---|---|---|---|"
)


def format_row(r: dict) -> str:
    return (
        f"| {r['widths']} | {r['layers']} | {r['rank']} | {r['d']} | {r['lam']:g} ({r['m']}) | "
        f"{r['est']:.2f} ± {r['std']:.2f} | {r['rel']:+.1%} | {r['rhat']:.3f} | {r['seconds']:.1f} |"
    )


def summary(rows: list[dict]) -> str:
    def stats(sel):
        errs = [abs(r["rel"]) for r in sel]
        return f"median {statistics.median(errs):.1%}, max {max(errs):.1%} (n = {len(errs)})" if errs else "—"

    lines = [f"- all configurations: |relative error| {stats(rows)}"]
    for layers in sorted({r["layers"] for r in rows}):
        lines.append(f"- {layers} layer(s): {stats([r for r in rows if r['layers'] == layers])}")
    lines.append(f"- rank 0 (most singular, w* = 0): {stats([r for r in rows if r['rank'] == 0])}")
    lines.append(f"- rank > 0: {stats([r for r in rows if r['rank'] > 0])}")
    return "\n".join(lines)


NUTS_REFERENCE = Path(__file__).with_name("nuts_reference.json")  # written by benchmarks/nuts_split.py


def nuts_reference(widths, rank, args) -> dict | None:
    """The exact-posterior λ̂ (NUTS) at these nβ, γ, n and seed from ``nuts_reference.json``, if it holds one
    (the run with the most draws); only for w* the minimizer, which is where nuts_split.py puts it."""
    if args.point != "minimum" or not NUTS_REFERENCE.exists():
        return None
    prefix = f"{'-'.join(map(str, widths))} r{rank} n={args.num_data} seed={args.seed} gamma={args.localization:g} "
    entries = [(k, v) for k, v in json.loads(NUTS_REFERENCE.read_text()).items() if k.startswith(prefix)]
    if not entries:
        return None

    def num_draws(entry):
        fields = dict(f.split("=") for f in entry[0].split() if "=" in f)
        return int(fields["samples"]) * int(fields["chains"])

    return max(entries, key=num_draws)[1]


def run_columns(args) -> tuple[list[dict], list[str]]:
    rows = []
    configs = CONFIGS if not args.only else [CONFIGS[i] for i in args.only]
    for widths, rank in configs:
        problem = slt.models.deep_linear_network(widths, rank, num_data=args.num_data, seed=args.seed, point=args.point)
        lam = float(problem.true_llc)
        row = dict(
            widths="-".join(map(str, widths)),
            layers=len(widths) - 1,
            rank=rank,
            d=problem.num_parameters,
            lam=lam,
            m=problem.multiplicity,
            cells={},
            nuts=nuts_reference(widths, rank, args),
        )
        for column in args.columns:
            sampler, step = column.split(":")
            kwargs = {}
            if step == "auto":
                kwargs = dict(step_size="auto", time_budget=args.time_budget)
            else:
                kwargs = dict(
                    step_size=float(step),
                    num_chains=args.num_chains,
                    num_draws=args.num_draws,
                    num_burnin=args.num_burnin,
                    batch_size=args.batch_size,
                )
            start = time.perf_counter()
            res = slt.estimate_llc(
                problem.loss_fn,
                problem.params,
                problem.data,
                key=jax.random.key(args.seed),
                sampler=sampler,
                localization=args.localization,
                **kwargs,
            )
            seconds = time.perf_counter() - start
            row["cells"][column] = dict(
                est=res.llc_mean,
                rel=(res.llc_mean - lam) / lam,
                seconds=seconds,
                step=res.step_size,
                draws=res.num_draws,
                rhat=res.rhat,
            )
            print(
                f"  {row['widths']} r{rank} {column}: λ̂ {res.llc_mean:.3f} vs {lam:g} ({res.llc_mean / lam - 1:+.1%}),"
                f" ε {res.step_size:.3g}, {res.num_draws} draws, R-hat {res.rhat:.3f}, {seconds:.1f} s",
                flush=True,
            )
        rows.append(row)
    return rows, list(args.columns)


def format_columns(rows, columns) -> str:
    has_nuts = any(r.get("nuts") for r in rows)
    nuts_head = "NUTS (exact posterior) | " if has_nuts else ""
    head = "| widths | L | r | d | λ | " + nuts_head + " | ".join(columns) + " |"
    lines = [head, "|" + "---|" * (5 + has_nuts + len(columns))]
    empty = "| | | | | " + ("| " if has_nuts else "")  # after the label: L, r, d, λ (and NUTS) left empty
    for r in rows:
        cells = [f"{c['est']:.2f} ({c['rel']:+.1%})" for c in (r["cells"][k] for k in columns)]
        nuts = ""
        if has_nuts:
            nuts = f"{r['nuts']['nuts']:.2f} ({r['nuts']['nuts'] / r['lam'] - 1:+.1%}) | " if r.get("nuts") else "— | "
        lines.append(
            f"| {r['widths']} | {r['layers']} | {r['rank']} | {r['d']} | {r['lam']:g} | "
            + nuts
            + " | ".join(cells)
            + " |"
        )

    def col_stats(sel, k, against=None):
        if against == "nuts":
            errs = [abs(r["cells"][k]["est"] - r["nuts"]["nuts"]) / r["lam"] for r in sel if r.get("nuts")]
        else:
            errs = [abs(r["cells"][k]["rel"]) for r in sel]
        return f"{statistics.median(errs):.1%} / {max(errs):.1%}" if errs else "—"

    def nuts_stats(sel):
        if not has_nuts:
            return ""
        errs = [abs(r["nuts"]["nuts"] / r["lam"] - 1) for r in sel if r.get("nuts")]
        return (f"{statistics.median(errs):.1%} / {max(errs):.1%}" if errs else "—") + " | "

    lines.append(
        "| **median / max, all** | | | | | " + nuts_stats(rows) + " | ".join(col_stats(rows, k) for k in columns) + " |"
    )
    two = [r for r in rows if r["layers"] == 2]
    if two and len(two) < len(rows):
        lines.append(
            "| **median / max, 2 layers** | | | | | "
            + nuts_stats(two)
            + " | ".join(col_stats(two, k) for k in columns)
            + " |"
        )
    if has_nuts:
        lines.append(
            "| **median / max \\|λ̂ − λ̂_NUTS\\|/λ** (sampler error, rows with NUTS) "
            + empty
            + " | ".join(col_stats(rows, k, "nuts") for k in columns)
            + " |"
        )
    lines.append(
        "| **seconds (total)** "
        + empty
        + " | ".join(f"{sum(r['cells'][k]['seconds'] for r in rows):.0f}" for k in columns)
        + " |"
    )
    lines.append("")
    lines.append("Chosen step sizes / kept draws per cell (auto columns):")
    for r in rows:
        lines.append(
            f"- {r['widths']} r{r['rank']}: "
            + "; ".join(
                f"{k} ε {r['cells'][k]['step']:.2g}, {r['cells'][k]['draws']} draws, {r['cells'][k]['seconds']:.0f} s"
                for k in columns
            )
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step-size", type=float, default=2e-6)
    parser.add_argument("--num-chains", type=int, default=4)
    parser.add_argument("--num-draws", type=int, default=40_000)
    parser.add_argument("--num-burnin", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--localization", type=float, default=1.0)
    parser.add_argument("--num-data", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--point", choices=["minimum", "true"], default="minimum")
    parser.add_argument("--only", type=int, nargs="*", help="indices into CONFIGS")
    parser.add_argument("--label", default=None, help="section label for RESULTS.md")
    parser.add_argument("--note", default="", help="text put under the table")
    parser.add_argument("--write", action="store_true", help="write the table into benchmarks/RESULTS.md")
    parser.add_argument("--columns", nargs="*", help="sampler:step columns, step a number or 'auto'")
    parser.add_argument("--time-budget", type=float, default=120.0, help="time_budget for auto columns")
    args = parser.parse_args(argv)

    if args.columns:
        start = time.perf_counter()
        rows, columns = run_columns(args)
        total = time.perf_counter() - start
        table = format_columns(rows, columns)
        print(table)
        if args.write:
            command = "python " + " ".join(["benchmarks/dln_accuracy.py", *sys.argv[1:]])
            body = "\n".join(
                [
                    "Cells: λ̂ (relative error against Aoyagi's λ). Fixed-step columns use the core issue's settings "
                    f"(batch {args.batch_size}, {args.num_chains} chains × {args.num_draws} draws after "
                    f'{args.num_burnin}); `auto` columns call `estimate_llc(step_size="auto")` with every other '
                    "argument at its default (batch 256, 4 chains; a first calibration from w*, a warm-up at a larger "
                    "step, a second calibration from the warm chains, burn-in and draws chosen from it; time_budget "
                    f"{args.time_budget:g} s). The NUTS column, where present, is the exact posterior's λ̂ at the same "
                    "nβ and γ from `benchmarks/nuts_reference.json` (`benchmarks/nuts_split.py`).",
                    "",
                    f"Run {datetime.date.today()} on {jax.devices()[0].device_kind} ({jax.devices()[0].platform}, JAX "
                    f"{jax.__version__}), total {total:.0f} s: `{command}`",
                    "",
                    table,
                    "",
                    args.note,
                ]
            )
            write_section(f"Accuracy per sampler: {args.label or 'DLN'}", body)
        return

    print(HEADER)
    start = time.perf_counter()
    rows = run(args)
    total = time.perf_counter() - start
    text = summary(rows)
    print(text)
    print(f"total {total:.0f} s")
    if args.write:
        label = args.label or f"DLN, SGLD at the issue's settings (w* = {args.point})"
        settings = (
            f"SGLD ε = {args.step_size:g}, nβ = n/log n, γ = {args.localization:g}, batch {args.batch_size}, "
            f"{args.num_chains} chains × {args.num_draws} draws after {args.num_burnin} burn-in, "
            f"n = {args.num_data}, x ~ N(0, I), y = Wx + N(0, I), w* = `point={args.point!r}`, seed {args.seed}."
        )
        command = "python " + " ".join(["benchmarks/dln_accuracy.py", *sys.argv[1:]])
        body = "\n".join(
            [
                f"{settings}",
                "",
                f"Run {datetime.date.today()} on {platform.machine()} CPU ({jax.devices()[0].platform}, JAX "
                f"{jax.__version__}), total {total:.0f} s: `{command}`",
                "",
                HEADER,
                *[format_row(r) for r in rows],
                "",
                text,
                "",
                args.note,
            ]
        )
        write_section(f"Accuracy: {label}", body)


if __name__ == "__main__":
    main()
