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
from jax.flatten_util import ravel_pytree

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
def make_floor(loss_fn, *, num_steps, batch_size, step_size, nbeta, localization, variant="floor"):
    """``jit(vmap(chain))``: plain SGLD from w*, one minibatch gradient per step, per-step losses out.

    ``variant`` (the floor is ``"floor"``; the others only show where the time goes):

    * ``"floor"``: per step, fold the step into the chain key, split it, draw minibatch indices with
      ``randint`` and one ``jax.random.normal`` per parameter leaf (what slt's SGLD does);
    * ``"flat_noise"``: the same, but the noise of all leaves in a single ``jax.random.normal`` call;
    * ``"no_rng"``: no random numbers at all: minibatches taken in cyclic order, no noise (so not a
      sampler). The gradient work alone.
    """

    def chain(key, center, data):
        num_data = jax.tree_util.tree_leaves(data)[0].shape[0]
        leaves, treedef = jax.tree_util.tree_flatten(center)
        flat_center, unravel = ravel_pytree(center)

        def step(position, t):
            if variant == "no_rng":
                idx = (t * batch_size + jnp.arange(batch_size)) % num_data
            else:
                num_keys = 2 if variant == "flat_noise" else 1 + len(leaves)
                keys = jax.random.split(jax.random.fold_in(key, t), num_keys)
                idx = jax.random.randint(keys[0], (batch_size,), 0, num_data)
            batch = jax.tree_util.tree_map(lambda x: jnp.take(x, idx, axis=0), data)
            loss, grad = jax.value_and_grad(loss_fn)(position, batch)
            if variant == "no_rng":
                noise = jax.tree_util.tree_map(jnp.zeros_like, position)
            elif variant == "flat_noise":
                noise = unravel(jax.random.normal(keys[1], flat_center.shape, flat_center.dtype))
            else:
                noise = jax.tree_util.tree_unflatten(
                    treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys[1:], leaves)]
                )
            position = jax.tree_util.tree_map(
                lambda w, g, c, z: (
                    w - 0.5 * step_size * (nbeta * g + localization * (w - c)) + math.sqrt(step_size) * z
                ),
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
CPU_TIMES: dict[str, list[float]] = {}


def timed(fn, name=None):
    """Wall seconds of ``fn()`` (and, under ``name``, the process CPU seconds, all threads)."""
    cpu = time.process_time()
    start = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - start
    if name is not None:
        CPU_TIMES.setdefault(name, []).append(time.process_time() - cpu)
    return wall, out


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
OLD_DRIVER_COMMIT = "ca91be0"  # the last commit with slt/sampling.py, the driver before the engine


def load_old_driver():
    """The pre-engine driver (``run_chains`` of ``slt/sampling.py`` at ``OLD_DRIVER_COMMIT``), imported from git
    history into a temporary module, or None where git or the commit is not at hand."""
    import importlib.util
    import subprocess
    import tempfile

    try:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{OLD_DRIVER_COMMIT}:slt/sampling.py"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "old_driver.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_driver", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    variants: dict[str, dict] = {}
    for _ in range(args.repeats):
        t, res = timed(call_slt, "slt")
        slt_times.append(t)
        slt_sampling.append(res.wall_time)
        t, floor_losses = timed(call_floor, "floor")
        floor_times.append(t)
    floor_llc = float(nbeta * (np.mean(floor_losses) - full_loss))

    # Where the time goes: the floor with its noise drawn in one call, and with no random numbers at all.
    for variant in () if args.no_variants else ("flat_noise", "no_rng"):
        fn = make_floor(
            problem.loss_fn,
            num_steps=NUM_DRAWS,
            batch_size=BATCH_SIZE,
            step_size=STEP_SIZE,
            nbeta=nbeta,
            localization=LOCALIZATION,
            variant=variant,
        )
        call = lambda fn=fn: np.asarray(fn(chain_keys, params, data))  # noqa: E731
        first, losses = timed(call)
        warm = [timed(call, variant)[0] for _ in range(max(3, args.repeats // 2))]
        llc = None if variant == "no_rng" else float(nbeta * (np.mean(losses) - full_loss))
        variants[variant] = dict(first=first, warm=warm, cpu=CPU_TIMES[variant], llc=llc)

    # The driver alone: in one chunk, in its default chunks, in chunks of 200 steps, and the old driver
    # (slt/sampling.py before the engine, read from git history) on the same work.
    target = slt.targets.make_target(problem.loss_fn, params, data)
    per_example = slt.targets.check_loss_at_center(target, 1024)
    run_kw = dict(
        key=key,
        example_losses_at_center=per_example,
        nbeta=nbeta,
        localization=LOCALIZATION,
        num_chains=NUM_CHAINS,
        num_steps=NUM_DRAWS,
        batch_size=BATCH_SIZE,
        sampler_params={"step_size": STEP_SIZE},
    )
    contestants = {
        "driver_one_chunk": lambda: slt.run_chains(target, steps_per_chunk=NUM_DRAWS, **run_kw).loss,
        "driver_chunks": lambda: slt.run_chains(target, **run_kw).loss,
        "driver_chunks_200": lambda: slt.run_chains(target, steps_per_chunk=200, **run_kw).loss,
    }
    old = load_old_driver()
    if old is not None:
        contestants["old_driver"] = lambda: old.run_chains(target, **run_kw).loss
    firsts = {name: timed(fn)[0] for name, fn in contestants.items()}
    warms: dict[str, list] = {name: [] for name in contestants}
    for _ in range(args.repeats):
        for name, fn in contestants.items():
            warms[name].append(timed(fn)[0])
    for name in contestants:
        rows[name] = dict(first=firsts[name], warm=warms[name], cpu=None, llc=None)

    rows["slt"] = dict(first=t_slt_first, warm=slt_times, cpu=CPU_TIMES["slt"], llc=res.llc_mean)
    rows["slt_sampling"] = dict(first=slt_first_sampling, warm=slt_sampling, cpu=None, llc=None)
    rows["floor"] = dict(first=t_floor_first, warm=floor_times, cpu=CPU_TIMES["floor"], llc=floor_llc)
    rows.update(variants)

    versions = {}
    module, why_not = (None, "skipped (--no-devinterp)") if args.no_devinterp else load_devinterp()
    if module is None:
        print(f"devinterp: skipped ({why_not})")
        env["devinterp"] = f"skipped: {why_not}"
    else:
        import torch

        if args.torch_threads > 0:
            torch.set_num_threads(args.torch_threads)
        versions = module.versions()
        di_device = args.devinterp_device
        if di_device == "auto":
            di_device = "cuda" if (platform_name == "gpu" and torch.cuda.is_available()) else "cpu"
        env["devinterp"] = (
            f"devinterp {versions['devinterp']}, torch {versions['torch']} on {di_device} "
            f"({torch.get_num_threads()} torch thread{'s' if torch.get_num_threads() > 1 else ''})"
        )
        print(f"devinterp: {env['devinterp']}")
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
        warm, cpu = [], []
        for _ in range(args.devinterp_repeats):
            c = time.process_time()
            t, llc = runner.run()
            cpu.append(time.process_time() - c)
            warm.append(t)
        rows["devinterp"] = dict(first=t_first, warm=warm, cpu=cpu, llc=llc)

    env["load_before"] = load_before
    env["load_after"] = load_average()
    env["script_seconds"] = time.perf_counter() - script_start
    return {"env": env, "rows": rows, "date": datetime.date.today().isoformat(), "command": command_line()}


# ----------------------------------------------------------------------------------------------- report
LABELS = {
    "slt": "`slt.estimate_llc` (whole call)",
    "slt_sampling": "  of which sampling (`wall_time`)",
    "floor": "floor: bare `jit(vmap(scan SGLD))`",
    "flat_noise": "  floor variant: noise in one `normal` call",
    "no_rng": "  floor variant: no random numbers (not a sampler)",
    "devinterp": "devinterp 1.3.2 (torch)",
    "driver_one_chunk": "driver alone, one chunk (`run_chains`)",
    "driver_chunks": "driver alone, default chunks (2 × 1000 steps)",
    "driver_chunks_200": "driver alone, chunks of 200 steps",
    "old_driver": "old driver (before the engine), same work",
}


def table(results: dict) -> list[str]:
    rows = results["rows"]
    out = [
        "| contestant | first call (s) | warm median (s) | warm min (s) | warm CPU median (s) | repeats | LLC |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in rows.items():
        llc = "" if row["llc"] is None else f"{row['llc']:.1f}"
        cpu = "" if not row.get("cpu") else f"{statistics.median(row['cpu']):.3f}"
        out.append(
            f"| {LABELS[name]} | {row['first']:.3f} | {statistics.median(row['warm']):.3f} | "
            f"{min(row['warm']):.3f} | {cpu} | {len(row['warm'])} | {llc} |"
        )
    return out


def ratios(results: dict) -> list[str]:
    rows = results["rows"]
    med = {k: statistics.median(v["warm"]) for k, v in rows.items()}
    out = [
        f"- slt warm / floor warm: **{med['slt'] / med['floor']:.2f}×** (target ≤ 1.15×); "
        f"by CPU time {statistics.median(rows['slt']['cpu']) / statistics.median(rows['floor']['cpu']):.2f}×; "
        f"sampling alone / floor: {med['slt_sampling'] / med['floor']:.2f}×",
        f"- slt first call / floor first call: **{rows['slt']['first'] / rows['floor']['first']:.2f}×**",
    ]
    if "driver_one_chunk" in rows:
        one = med["driver_one_chunk"]
        out.append(
            f"- chunking cost: default chunks / one chunk **{med['driver_chunks'] / one:.3f}×** (target ≤ 1.03×), "
            f"chunks of 200 steps / one chunk {med['driver_chunks_200'] / one:.3f}×"
        )
    if "old_driver" in rows:
        out.append(
            f"- new driver / old driver (same work, warm): **{med['driver_chunks'] / med['old_driver']:.3f}×**; "
            f"first call {rows['driver_chunks']['first'] / rows['old_driver']['first']:.2f}× "
            "(the old driver was compiled first in this process for nothing shared: both compile their own code)"
        )
    if "no_rng" in rows:
        out.append(
            f"- random numbers are {1 - med['no_rng'] / med['floor']:.0%} of the floor's warm time (without "
            f"them it runs {med['floor'] / med['no_rng']:.1f}× faster)"
        )
    if "flat_noise" in rows:
        out.append(
            f"- noise of all leaves in one `normal` call instead of one per leaf: warm "
            f"{med['flat_noise'] / med['floor']:.2f}×, first call "
            f"{rows['flat_noise']['first'] / rows['floor']['first']:.2f}× the floor's"
        )
    if "devinterp" in rows:
        out.append(
            f"- devinterp warm / slt warm: **{med['devinterp'] / med['slt']:.0f}×** (target ≥ 30×); "
            f"devinterp first call / slt first call: {rows['devinterp']['first'] / rows['slt']['first']:.0f}×"
        )
    else:
        out.append(f"- devinterp: not run ({results['env']['devinterp']})")
    return out


def subsection(results: dict) -> str:
    env = results["env"]
    kind = "GPU" if env["platform"] == "gpu" else "CPU"
    title = f"### {kind}: {env['device_kind']}" if kind == "GPU" else f"### CPU: {env['cpu']}, {env['cpu_count']} cores"
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


SECTION_INTRO = """Workload (`benchmarks/speed.py`): deep linear network 10-20-20-10 at a rank-5 point
(`slt.models.deep_linear_network([10, 20, 20, 10], 5, num_data=10_000)`), minibatches of 100, 8 chains ×
2000 SGLD steps (no burn-in), ε = 2e-6, nβ = n/log n, γ = 1. *First call* is the first call in the process,
compilation included; *warm* is the median of repeated calls after it. The floor is a bare
`jax.jit(jax.vmap(chain))` of a `lax.scan` of plain SGLD doing the same gradient work with no features. The
slt row is the whole `estimate_llc` call (checks, L_n(w*) on all n examples, sampling, ArviZ diagnostics);
the row under it is its sampling call alone. *Warm CPU* is the process CPU time (all threads) of the same
calls, which a busy machine disturbs less than wall time. The two indented floor variants only show where
the time goes: the floor with the noise of all parameter leaves drawn in one `jax.random.normal` call, and
the floor with no random numbers at all (cyclic minibatches, no noise: the gradient work alone). LLC is each
run's estimate, only a check that all three do the same work: without burn-in, 2000 steps at this ε have
not equilibrated (the learning coefficient here is 50), the floor and devinterp report the plain
estimator, slt the paired one. devinterp is given the full-data L_n(w*) as `init_loss` and runs its chains
one after another (its default) with one torch thread (`--torch-threads`): on this shared 2-core machine two
threads made its runs 1.6× to 9× slower. XLA uses the second core for part of the JAX work when it is idle
(CPU time above wall time).
"""


def write_results(results: dict) -> None:
    """Replace this machine's ``### CPU`` / ``### GPU`` subsection of ``## Speed``, keeping the other one."""
    import _results  # benchmarks/_results.py, beside this script

    new_sub = subsection(results)
    kind = new_sub.split(":", 1)[0]  # "### CPU" / "### GPU"
    text = _results.RESULTS.read_text() if _results.RESULTS.exists() else ""
    match = re.search(r"^## Speed[ \t]*\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    parts = re.split(r"^(?=### )", match.group(1), flags=re.M)[1:] if match else []
    subs = {part.split(":", 1)[0]: part for part in parts}
    subs[kind] = new_sub
    ordered = [subs[k].strip() for k in sorted(subs, key=lambda k: (k != "### CPU", k))]
    _results.write_section("Speed", SECTION_INTRO + "\n" + "\n\n".join(ordered))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="warm repeats of slt and the floor (>= 3)")
    parser.add_argument("--devinterp-repeats", type=int, default=3, help="warm repeats of devinterp (>= 3)")
    parser.add_argument("--no-devinterp", action="store_true", help="skip devinterp even if importable")
    parser.add_argument(
        "--devinterp-device",
        default="auto",
        help="torch device for devinterp (auto: cuda when JAX runs on a GPU and torch sees one, else cpu)",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads for devinterp (default 1: the JAX contestants run on one core too, and "
        "on a busy machine a second torch thread spin-waits; 0 keeps torch's default)",
    )
    parser.add_argument(
        "--no-variants", action="store_true", help="skip the two floor variants that show where the time goes"
    )
    parser.add_argument("--write", action="store_true", help="update the Speed section of RESULTS.md")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.devinterp_repeats < 1:
        parser.error("repeats must be positive")
    results = run(args)
    print()
    print("\n".join(table(results)))
    print()
    print("\n".join(ratios(results)))
    env = results["env"]
    print(
        f"\nload average {env['load_before']} before, {env['load_after']} after; "
        f"script took {env['script_seconds']:.1f} s"
    )
    if args.write:
        write_results(results)
        print(f"updated {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
