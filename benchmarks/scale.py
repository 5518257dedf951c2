"""Time and peak memory per draw of the sampling driver against the number of parameters, chains and devices.

Model: a tanh MLP 64 → w → w → 1 (d ≈ w² + 66w parameters) with a mean-squared-error loss on n = 4096
examples generated in code, minibatches of 32, SGLD (the driver through ``slt.sample``, recording the loss
and the loss at w* on the same minibatch). Each configuration runs in its own process, so that its peak
memory is its own: a first run of 200 steps (compilation included), then a second, timed, in chunks of 100
steps. Peak memory: the device allocator's peak (``memory_stats()["peak_bytes_in_use"]``) on a GPU, the
process's peak resident set (``ru_maxrss``) on CPU. A configuration that runs out of memory is reported as
such, which gives the largest model that fits.

    python benchmarks/scale.py                       # CPU: d = 1e4 … 1e7, 1 and 4 chains
    python benchmarks/scale.py --sizes 1e4 1e6 1e8 1e9 --chains 1 4 8   # on a GPU
    python benchmarks/scale.py --devices 8 --mesh 4x2  # CPU devices simulated: 4 chain × 2 model shards

``--write`` replaces this device's subsection of ``## Scale`` in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

NUM_DATA = 4096
INPUTS = 64
BATCH = 32
STEPS = 200


def one(size: float, chains: int, mesh_shape: str | None) -> dict:
    """Runs in the child process: build the model of about ``size`` parameters and time the driver."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import slt

    width = int((-66 + math.sqrt(66**2 + 4 * size)) / 2)
    rng = np.random.default_rng(0)
    key = jax.random.key(0)
    k1, k2, k3 = jax.random.split(key, 3)
    params = {
        "w1": jax.random.normal(k1, (INPUTS, width)) / math.sqrt(INPUTS),
        "w2": jax.random.normal(k2, (width, width)) / math.sqrt(width),
        "w3": jax.random.normal(k3, (width, 1)) / math.sqrt(width),
    }
    x = jnp.asarray(rng.standard_normal((NUM_DATA, INPUTS)), jnp.float32)
    y = jnp.asarray(rng.standard_normal((NUM_DATA, 1)), jnp.float32)

    def loss_fn(p, batch):
        xb, yb = batch
        h = jnp.tanh(jnp.tanh(xb @ p["w1"]) @ p["w2"])
        return jnp.mean((h @ p["w3"] - yb) ** 2)

    target = slt.targets.make_target(loss_fn, params, (x, y))
    d = target.num_parameters
    per_example = slt.targets.per_example_losses(target, chunk_size=256)
    mesh = None
    if mesh_shape:
        c, m = (int(v) for v in mesh_shape.split("x"))
        mesh = jax.make_mesh((c, m), ("chain", "model"))
    kw = dict(
        key=jax.random.key(1),
        example_losses_at_center=per_example,
        nbeta=NUM_DATA / math.log(NUM_DATA),
        localization=1.0,
        num_chains=chains,
        num_steps=STEPS,
        batch_size=BATCH,
        sampler_params={"step_size": 1e-7},
        steps_per_chunk=100,
        mesh=mesh,
    )
    t0 = time.perf_counter()
    slt.run_chains(target, **kw)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    trace = slt.run_chains(target, **kw)
    warm = time.perf_counter() - t0
    assert np.isfinite(trace.loss).all()
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats:
        peak = stats.get("peak_bytes_in_use", 0)
    else:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return dict(
        d=d,
        chains=chains,
        mesh=mesh_shape or "",
        devices=jax.device_count(),
        first_s=first,
        ms_per_step=1e3 * warm / STEPS,
        us_per_chain_step=1e6 * warm / STEPS / chains,
        peak_gib=peak / 2**30,
        platform=device.platform,
        device_kind=getattr(device, "device_kind", device.platform),
        jax=jax.__version__,
    )


def run_child(size, chains, args) -> dict:
    env = dict(os.environ)
    if args.devices:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    cmd = [sys.executable, __file__, "--child", str(size), str(chains)] + (["--mesh", args.mesh] if args.mesh else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode == 0:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    text = proc.stderr
    why = (
        "out of memory"
        if ("RESOURCE_EXHAUSTED" in text or "Out of memory" in text or proc.returncode == -9)
        else "failed"
    )
    return dict(
        d=int(float(size)), chains=chains, mesh=args.mesh or "", error=why, detail=text.strip().splitlines()[-1:]
    )


def table(rows: list[dict]) -> list[str]:
    out = [
        "| d | chains | mesh | first call (s) | ms per step (all chains) | µs per chain-step | peak memory (GiB) |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if "error" in r:
            out.append(f"| ~{r['d']:.0e} | {r['chains']} | {r['mesh']} | {r['error']} | | | |")
        else:
            out.append(
                f"| {r['d']:,} | {r['chains']} | {r['mesh']} | {r['first_s']:.1f} | {r['ms_per_step']:.3f} | "
                f"{r['us_per_chain_step']:.1f} | {r['peak_gib']:.2f} |"
            )
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", nargs="+", default=["1e4", "1e5", "1e6", "1e7"])
    parser.add_argument("--chains", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--devices", type=int, default=0, help="simulated CPU devices (XLA_FLAGS)")
    parser.add_argument("--mesh", default=None, help="CxM: a ('chain', 'model') mesh of C × M devices")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument("--write", action="store_true", help="update the Scale section of RESULTS.md")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(one(float(args.child[0]), int(args.child[1]), args.mesh)))
        return 0
    rows = []
    for size in args.sizes:
        for chains in args.chains:
            row = run_child(size, chains, args)
            rows.append(row)
            print(json.dumps(row), flush=True)
    lines = table(rows)
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.write:
        sys.path.insert(0, os.path.dirname(__file__))
        import _results

        ok = [r for r in rows if "error" not in r]
        kind = ok[0]["device_kind"] if ok else "unknown"
        where = "GPU" if ok and ok[0]["platform"] == "gpu" else "CPU"
        command = f"`python benchmarks/scale.py {' '.join(argv or sys.argv[1:])}`"
        jax_version = ok[0]["jax"] if ok else "?"
        _results.write_section(
            f"Scale ({where})",
            "\n".join(
                [f"{kind}, {platform.processor() or platform.machine()}, JAX {jax_version}; {command}.", "", *lines]
            ),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
