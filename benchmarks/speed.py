"""Speed of ``slt.estimate_llc`` against a bare jitted SGLD loop (the floor) and devinterp 1.3.2.

Workload (fixed): deep linear network with widths 10-20-20-10 at a rank-5 point, n = 10 000, minibatches
of 100 drawn with replacement, 8 chains × 2000 SGLD steps (no burn-in), ε = 2e-6, nβ = n / log n, γ = 1.

Three contestants, timed in one process:

1. ``slt.estimate_llc`` (the whole call: argument checks, L_n(w*) on the full data, the jitted chains,
   the ArviZ diagnostics). Its ``wall_time`` (the sampling call alone) is shown on its own row.
2. The floor: ``jax.jit(jax.vmap(chain))`` with ``chain`` a ``lax.scan`` of plain SGLD written out below,
   with the same gradient work per step and nothing else; it returns the per-step losses so that XLA
   cannot drop any of the work.
3. devinterp 1.3.2's ``estimate_learning_coeff_with_summary`` with its SGLD on the same network (torch),
   if torch and devinterp are importable. They live in a separate environment so that torch never enters
   the main one::

       python3 -m venv .venv-devinterp
       .venv-devinterp/bin/pip install torch==2.13.0 devinterp==1.3.2 jax flax arviz tqdm
       .venv-devinterp/bin/pip install --no-deps -e .
       .venv-devinterp/bin/python benchmarks/speed.py [--write]

"First call" is the first call in the process, compilation included (for slt: the first ``estimate_llc``
of the process; for the floor: a freshly built ``jax.jit``). "Warm" is the median over ``--repeats``
further calls; slt and the floor alternate so that a change of machine load hits both alike.

``--write`` replaces this machine's subsection (``### CPU`` or ``### GPU``) of the ``## Speed`` section
of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import slt

WIDTHS = (10, 20, 20, 10)
RANK = 5
NUM_DATA = 10_000
BATCH_SIZE = 100
NUM_CHAINS = 8
NUM_DRAWS = 2000
STEP_SIZE = 2e-6
LOCALIZATION = 1.0
SEED = 0

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"


# --------------------------------------------------------------------------------------------- the floor
def make_floor(loss_fn, *, num_steps, batch_size, step_size, nbeta, localization):
    """``jit(vmap(chain))``: plain SGLD from w*, one minibatch gradient per step, per-step losses out."""

    def chain(key, center, data):
        num_data = jax.tree_util.tree_leaves(data)[0].shape[0]
        leaves, treedef = jax.tree_util.tree_flatten(center)

        def step(position, t):
            keys = jax.random.split(jax.random.fold_in(key, t), 1 + len(leaves))
            idx = jax.random.randint(keys[0], (batch_size,), 0, num_data)
            batch = jax.tree_util.tree_map(lambda x: jnp.take(x, idx, axis=0), data)
            loss, grad = jax.value_and_grad(loss_fn)(position, batch)
            noise = jax.tree_util.tree_unflatten(
                treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys[1:], leaves)]
            )
            position = jax.tree_util.tree_map(
                lambda w, g, c, z: w
                - 0.5 * step_size * (nbeta * g + localization * (w - c))
                + math.sqrt(step_size) * z,
                position,
                grad,
                center,
                noise,
            )
            return position, loss

        _, losses = jax.lax.scan(step, center, jnp.arange(num_steps))
        return losses

    return jax.jit(jax.vmap(chain, in_axes=(0, None, None)))


# ------------------------------------------------------------------------------------------------ timing
def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "n/a"


def command_line() -> str:
    exe = Path(sys.executable)
    try:
        rel = exe.relative_to(ROOT)
        interpreter = str(rel)
    except ValueError:
        interpreter = "python"
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(ROOT)
    except ValueError:
        pass
    return " ".join([interpreter, str(script), *sys.argv[1:]])


def load_devinterp():
    """The devinterp runner module, or the reason it cannot be used."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        import _devinterp_speed
    except ImportError as err:
        return None, f"{type(err).__name__}: {err}"
    finally:
        sys.path.pop(0)
    return _devinterp_speed, None


# -------------------------------------------------------------------------------------------- benchmark
def run(args) -> dict:
    script_start = time.perf_counter()
    device = jax.devices()[0]
    platform_name = device.platform  # "cpu" / "gpu"
    problem = slt.models.deep_linear_network(list(WIDTHS), RANK, num_data=NUM_DATA, seed=SEED)
    nbeta = NUM_DATA / math.log(NUM_DATA)
    params, data = problem.params, problem.data
    jax.block_until_ready((params, data))
    full_loss = float(problem.loss_fn(params, data))  # backend initialised before anything is timed

    env = {
        "device": str(device),
        "device_kind": getattr(device, "device_kind", platform_name),
        "platform": platform_name,
        "jax": jax.__version__,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(f"device: {env['device']} ({env['device_kind']}), jax {env['jax']}, python {env['python']}")
    print(f"host CPU: {env['cpu']}, {env['cpu_count']} CPUs, load average {load_average()}")
    print(
        f"workload: DLN {'-'.join(map(str, WIDTHS))} rank {RANK}, n = {NUM_DATA}, batch {BATCH_SIZE}, "
        f"{NUM_CHAINS} chains × {NUM_DRAWS} draws (no burn-in), ε = {STEP_SIZE:g}, nβ = {nbeta:.2f}, "
        f"γ = {LOCALIZATION:g}; L_n(w*) = {full_loss:.6f}"
    )
    load_before = load_average()
    key = jax.random.key(SEED)

    def call_slt():
        res = slt.estimate_llc(
            problem.loss_fn,
            params,
            data,
            key=key,
            step_size=STEP_SIZE,
            num_chains=NUM_CHAINS,
            num_draws=NUM_DRAWS,
            num_burnin=0,
            batch_size=BATCH_SIZE,
            nbeta=nbeta,
            localization=LOCALIZATION,
        )
        return res  # arrays in an LLCResult are numpy: the work is done when it returns

    chain_keys = jax.random.split(jax.random.key(SEED + 1), NUM_CHAINS)
    floor_fn = make_floor(
        problem.loss_fn,
        num_steps=NUM_DRAWS,
        batch_size=BATCH_SIZE,
        step_size=STEP_SIZE,
        nbeta=nbeta,
        localization=LOCALIZATION,
    )

    def call_floor():
        return np.asarray(floor_fn(chain_keys, params, data))  # (chains, steps) losses on the host

    rows: dict[str, dict] = {}

    # First calls: the first estimate_llc of the process, then a freshly built jit of the floor.
    t_slt_first, res = timed(call_slt)
    t_floor_first, floor_losses = timed(call_floor)
    slt_first_sampling = res.wall_time
    assert floor_losses.shape == (NUM_CHAINS, NUM_DRAWS) and np.all(np.isfinite(floor_losses))

    slt_times, slt_sampling, floor_times = [], [], []
    for _ in range(args.repeats):
        t, res = timed(call_slt)
        slt_times.append(t)
        slt_sampling.append(res.wall_time)
        t, floor_losses = timed(call_floor)
        floor_times.append(t)
    floor_llc = float(nbeta * (np.mean(floor_losses) - full_loss))

    rows["slt"] = dict(first=t_slt_first, warm=slt_times, llc=res.llc_mean)
    rows["slt_sampling"] = dict(first=slt_first_sampling, warm=slt_sampling, llc=None)
    rows["floor"] = dict(first=t_floor_first, warm=floor_times, llc=floor_llc)

    versions = {}
    module, why_not = (None, "skipped (--no-devinterp)") if args.no_devinterp else load_devinterp()
    if module is None:
        print(f"devinterp: skipped ({why_not})")
        env["devinterp"] = f"skipped: {why_not}"
    else:
        import torch

        versions = module.versions()
        di_device = args.devinterp_device
        if di_device == "auto":
            di_device = "cuda" if (platform_name == "gpu" and torch.cuda.is_available()) else "cpu"
        env["devinterp"] = f"devinterp {versions['devinterp']}, torch {versions['torch']} on {di_device}"
        print(f"devinterp: {env['devinterp']} ({torch.get_num_threads()} torch threads)")
        runner = module.DevinterpRunner(
            params,
            data,
            step_size=STEP_SIZE,
            nbeta=nbeta,
            localization=LOCALIZATION,
            num_chains=NUM_CHAINS,
            num_draws=NUM_DRAWS,
            batch_size=BATCH_SIZE,
            device=di_device,
            seed=SEED,
        )
        torch_loss = runner.full_loss()
        if not math.isclose(torch_loss, full_loss, rel_tol=1e-4):
            raise RuntimeError(f"torch model's L_n(w*) = {torch_loss} differs from JAX's {full_loss}")
        t_first, llc = runner.run()
        warm = []
        for _ in range(args.devinterp_repeats):
            t, llc = runner.run()
            warm.append(t)
        rows["devinterp"] = dict(first=t_first, warm=warm, llc=llc)

    env["load_before"] = load_before
    env["load_after"] = load_average()
    env["script_seconds"] = time.perf_counter() - script_start
    return {"env": env, "rows": rows, "date": datetime.date.today().isoformat(), "command": command_line()}


# ----------------------------------------------------------------------------------------------- report
LABELS = {
    "slt": "`slt.estimate_llc` (whole call)",
    "slt_sampling": "  of which sampling (`wall_time`)",
    "floor": "floor: bare `jit(vmap(scan SGLD))`",
    "devinterp": "devinterp 1.3.2 (torch)",
}


def table(results: dict) -> list[str]:
    rows = results["rows"]
    out = [
        "| contestant | first call (s) | warm median (s) | warm min (s) | repeats | LLC |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in rows.items():
        llc = "" if row["llc"] is None else f"{row['llc']:.2f}"
        out.append(
            f"| {LABELS[name]} | {row['first']:.3f} | {statistics.median(row['warm']):.3f} | "
            f"{min(row['warm']):.3f} | {len(row['warm'])} | {llc} |"
        )
    return out


def ratios(results: dict) -> list[str]:
    rows = results["rows"]
    med = {k: statistics.median(v["warm"]) for k, v in rows.items()}
    out = [
        f"- slt warm / floor warm: **{med['slt'] / med['floor']:.2f}×** (target ≤ 1.2×); "
        f"sampling alone / floor: {med['slt_sampling'] / med['floor']:.2f}×",
        f"- slt first call / floor first call: **{rows['slt']['first'] / rows['floor']['first']:.2f}×**",
    ]
    if "devinterp" in rows:
        out.append(
            f"- devinterp warm / slt warm: **{med['devinterp'] / med['slt']:.0f}×** (target ≥ 30×); "
            f"devinterp first call / slt first call: {rows['devinterp']['first'] / rows['slt']['first']:.0f}×"
        )
    else:
        out.append("- devinterp: not run (not importable in this interpreter)")
    return out


def subsection(results: dict) -> str:
    env = results["env"]
    kind = "GPU" if env["platform"] == "gpu" else "CPU"
    title = (
        f"### {kind}: {env['device_kind']}"
        if kind == "GPU"
        else f"### CPU: {env['cpu']}, {env['cpu_count']} cores"
    )
    lines = [
        title,
        "",
        f"Measured {results['date']} with `{results['command']}` (the whole script took "
        f"{env['script_seconds']:.0f} s). JAX {env['jax']} on `{env['device']}`, host {env['cpu']} with "
        f"{env['cpu_count']} CPUs, Python {env['python']}; {env['devinterp']}. Load average (1, 5, 15 min) "
        f"{env['load_before']} before, {env['load_after']} after.",
        "",
        *table(results),
        "",
        *ratios(results),
        "",
    ]
    return "\n".join(lines)


SECTION_INTRO = """## Speed

Workload (`benchmarks/speed.py`): deep linear network 10-20-20-10 at a rank-5 point
(`slt.models.deep_linear_network([10, 20, 20, 10], 5, num_data=10_000)`), minibatches of 100, 8 chains ×
2000 SGLD steps (no burn-in), ε = 2e-6, nβ = n/log n, γ = 1. *First call* is the first call in the process,
compilation included; *warm* is the median of repeated calls after it. The floor is a bare
`jax.jit(jax.vmap(chain))` of a `lax.scan` of plain SGLD doing the same gradient work with no features. The
slt row is the whole `estimate_llc` call (checks, L_n(w*) on all n examples, sampling, ArviZ diagnostics);
the row under it is its sampling call alone. LLC is each run's estimate (true λ = 17.5; the floor's and
devinterp's are the plain estimator, slt's the paired one), as a check that all do the same work.
"""


def write_results(results: dict, path: Path = RESULTS) -> None:
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    new_sub = subsection(results)
    kind = new_sub.split(":", 1)[0]  # "### CPU" / "### GPU"
    match = re.search(r"^## Speed[ \t]*\n", text, flags=re.M)
    if match is None:
        text = text.rstrip("\n") + "\n\n" + SECTION_INTRO + "\n" + new_sub
        path.write_text(text.rstrip("\n") + "\n")
        return
    start = match.start()
    nxt = re.search(r"^## ", text[match.end():], flags=re.M)
    end = match.end() + nxt.start() if nxt else len(text)
    section = text[start:end]
    # Subsections of the speed section, keyed by their "### CPU" / "### GPU" prefix.
    parts = re.split(r"^(?=### )", section, flags=re.M)
    subs = {p.split(":", 1)[0]: p.rstrip("\n") + "\n" for p in parts[1:]}
    subs[kind] = new_sub
    ordered = [subs[k] for k in sorted(subs, key=lambda k: (k != "### CPU", k))]
    section = SECTION_INTRO + "\n" + "\n".join(s.rstrip("\n") + "\n" for s in ordered)
    tail = text[end:]
    text = text[:start] + section + ("\n" + tail if tail else "")
    path.write_text(text.rstrip("\n") + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="warm repeats of slt and the floor (>= 3)")
    parser.add_argument("--devinterp-repeats", type=int, default=3, help="warm repeats of devinterp (>= 3)")
    parser.add_argument("--no-devinterp", action="store_true", help="skip devinterp even if importable")
    parser.add_argument("--devinterp-device", default="auto", help="torch device for devinterp (auto: "
                        "cuda when JAX runs on a GPU and torch sees one, else cpu)")
    parser.add_argument("--write", action="store_true", help="update the Speed section of RESULTS.md")
    parser.add_argument("--results", type=Path, default=RESULTS, help="file that --write updates")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.devinterp_repeats < 1:
        parser.error("repeats must be positive")
    results = run(args)
    print()
    print("\n".join(table(results)))
    print()
    print("\n".join(ratios(results)))
    env = results["env"]
    print(f"\nload average {env['load_before']} before, {env['load_after']} after; "
          f"script took {env['script_seconds']:.1f} s")
    if args.write:
        write_results(results, args.results)
        print(f"updated {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
