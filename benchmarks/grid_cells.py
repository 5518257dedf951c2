"""A calibration grid's cells together (one vmapped program) or one after another (the program of a plain run).

Per problem, each mode in a fresh process (compilation included): a grid of 8 step-size cells × 4 chains ×
2,000 steps (``slt._src.driver.run_grid``, chunks of 100 steps as ``step_size="auto"`` runs them), then the run
such a grid would choose: 4 chains × 6,000 steps at one of its steps, with the same chunk length. ``together``
batches the 8 cells (``cell_batch_size=None``; the run then compiles a second program); ``one by one`` runs
each cell in the run's program (``cell_batch_size=1``: one compilation for both). Modes alternate,
``--repeats`` times, and the minimum is kept (the machine may be shared).

    python benchmarks/grid_cells.py            # prints the table
    python benchmarks/grid_cells.py --write    # and the section of benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import platform
from pathlib import Path

try:
    from benchmarks._results import run_child, write_section
except ImportError:  # run as a script
    from _results import run_child, write_section

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
import jax, jax.numpy as jnp, numpy as np, slt
from slt._src import driver
spec = json.loads(sys.argv[1])
name = spec["problem"]
if name.startswith("DLN"):
    widths = [int(w) for w in name.split()[1].split("-")]
    p = slt.models.deep_linear_network(widths, 0, num_data=10000, seed=0, point="minimum")
    target = slt.targets.make_target(p.loss_fn, p.params, p.data)
elif name.startswith("crossing"):
    p = slt.models.normal_crossing((1, 2), num_data=1000)
    target = slt.targets.make_target(p.loss_fn, p.params, p.data)
else:  # a small GPT on the synthetic language (untrained: the step's cost does not depend on the weights)
    from flax import nnx
    lang = slt.models.SyntheticLanguage(16, num_induction_tokens=2, num_skip_pairs=2, seed=0)
    data = slt.models.lm_data(lang.sample(jax.random.key(1), 512, 17).tokens)
    config = slt.models.GPTConfig(vocab_size=16, context_length=16, num_layers=1, num_heads=2, d_model=16, d_mlp=32)
    model = slt.models.GPT(config, rngs=nnx.Rngs(0))
    target = slt.targets.make_target(model, data, loss=slt.models.token_cross_entropy)
per_example = slt.targets.check_loss_at_center(target, 1024)
common = dict(example_losses_at_center=per_example, nbeta=float(slt.default_nbeta(target.num_data)),
              localization=1.0, num_chains=4, batch_size=min(32, target.num_data), steps_per_chunk=100)
eps = 1e-6 * 0.5 ** np.arange(8)
start = time.perf_counter()
grid = driver.run_grid(target, keys=jnp.stack([jax.random.key(0)] * 8), num_steps=2000,
                       sampler_params={"step_size": eps}, cell_batch_size=spec["cell_batch_size"], **common)
grid_s = time.perf_counter() - start
t = time.perf_counter()
run = driver.run_chains(target, key=jax.random.key(1), num_steps=6000, sampler_params={"step_size": eps[3]},
                        init_position=jax.tree_util.tree_map(lambda x: x[3], grid.final_state.position), **common)
run_s = time.perf_counter() - t
print("RESULT" + json.dumps(dict(grid=grid_s, run=run_s, total=time.perf_counter() - start,
                      params=int(target.num_parameters))))
"""

PROBLEMS = ["crossing (1, 2)", "DLN 5-3-5", "DLN 20-10-30", "GPT 1 layer"]
MODES = {"together": None, "one by one": 1}


def measure(problem: str, cell_batch_size) -> dict:
    return run_child(CHILD, {"problem": problem, "cell_batch_size": cell_batch_size}, ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    rows = []
    for problem in PROBLEMS:
        best: dict = {}
        for _ in range(args.repeats):
            for mode, size in MODES.items():
                m = measure(problem, size)
                if mode not in best or m["total"] < best[mode]["total"]:
                    best[mode] = m
        a, b = best["together"], best["one by one"]
        row = (
            f"| {problem} | {a['params']} | {a['grid']:.2f} | {a['run']:.2f} | {a['total']:.2f} | "
            f"{b['grid']:.2f} | {b['run']:.2f} | {b['total']:.2f} | {b['total'] / a['total']:.2f} |"
        )
        print(row, flush=True)
        rows.append(row)
    import jax

    header = (
        f"Run {datetime.date.today()} on {platform.machine()} ({jax.default_backend()}, JAX {jax.__version__}): "
        "`python benchmarks/grid_cells.py --write`\n\n"
        "Seconds in a fresh process, compilation included; the minimum of "
        f"{args.repeats} alternating repeats. Grid: 8 step-size cells × 4 chains × 2,000 steps; run: 4 chains × "
        "6,000 steps at one cell's step, from its final positions (chunks of 100 steps throughout).\n\n"
        "| problem | d | together: grid | run | total | one by one: grid | run | total | one by one / together |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    table = header + "\n".join(rows)
    print(table)
    if args.write:
        write_section("Calibration grid: cells together or one by one (CPU)", table)


if __name__ == "__main__":
    main()
