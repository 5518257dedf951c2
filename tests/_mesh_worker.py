"""Worker for tests/test_mesh.py: the same run of the driver on several device meshes, in a fresh process.

A CPU device count must be fixed before JAX starts (``XLA_FLAGS=--xla_force_host_platform_device_count``),
so the test launches this script with the variable set, or, with ``--process-id``, as one of several
processes of a ``jax.distributed`` run that share one global mesh. It writes ``<out>.npz`` (the loss traces)
and ``<out>.json`` (shardings, error messages). Nothing runs on import (pytest imports it for doctests).

    python tests/_mesh_worker.py OUT                                  # one process, all meshes
    python tests/_mesh_worker.py OUT --process-id I --num-processes N --port P   # one process of N
"""

from __future__ import annotations

import argparse
import json
import os
import sys

NUM_CHAINS = 8
RUN = dict(
    nbeta=100.0,
    localization=1.0,
    num_chains=NUM_CHAINS,
    num_steps=1500,
    batch_size=50,
    sampler_params={"step_size": 1e-3},
)


def _problem():
    import jax

    import slt
    from slt._src.driver import run_chains

    p = slt.models.deep_linear_network([3, 2, 3], 1, num_data=500, seed=2)
    target = slt.targets.make_target(p.loss_fn, p.params, p.data)
    per_example = slt.targets.check_loss_at_center(target, 1024)

    def run(mesh, **kw):
        return run_chains(
            target, key=jax.random.key(0), example_losses_at_center=per_example, mesh=mesh, **{**RUN, **kw}
        )

    return run


def _layout(tree) -> list:
    """Per leaf of the final state: its shape, partition spec, device count, shard shape, addressability."""
    import jax

    out = []
    for x in jax.tree_util.tree_leaves(tree):
        spec = getattr(x.sharding, "spec", None)
        out.append(
            {
                "shape": list(x.shape),
                "spec": None if spec is None else [None if s is None else str(s) for s in spec],
                "devices": len(x.sharding.device_set),
                "shard_shape": list(x.sharding.shard_shape(x.shape)),
                "fully_addressable": bool(x.is_fully_addressable),
            }
        )
    return out


def single(out: str) -> None:
    import jax
    import numpy as np
    from jax.sharding import Mesh

    assert jax.device_count() == 8, jax.devices()
    run = _problem()
    devices = np.array(jax.devices())
    traces, info = {}, {"layout": {}, "errors": {}}

    def keep(name, trace):
        traces[f"{name}/loss"] = trace.loss
        traces[f"{name}/loss_at_center"] = trace.loss_at_center
        info["layout"][name] = _layout(trace.final_state)

    keep("none", run(None))
    keep("none_cb1", run(None, chain_batch_size=1))  # one chain per call: the vectorization width of 8 devices
    for k in (1, 2, 4, 8):
        keep(f"chain{k}", run(Mesh(devices[:k], ("chain",))))
    keep("chain4_model2", run(Mesh(devices.reshape(4, 2), ("chain", "model"))))

    for name, call in {
        "num_chains": lambda: run(Mesh(devices[:4], ("chain",)), num_chains=6),
        "chain_batch_size": lambda: run(Mesh(devices[:4], ("chain",)), chain_batch_size=2),
        "axis_name": lambda: run(Mesh(devices[:4], ("chains",))),
        "not_a_mesh": lambda: run(list(devices[:4])),
    }.items():
        try:
            call()
            info["errors"][name] = None
        except ValueError as e:
            info["errors"][name] = str(e)
    np.savez(out + ".npz", **traces)
    with open(out + ".json", "w") as f:
        json.dump(info, f)


def distributed(out: str, process_id: int, num_processes: int, port: int) -> None:
    import jax
    import numpy as np
    from jax.sharding import Mesh

    try:  # the default CPU collectives in jax 0.10 and 0.12; say so for versions where it is not
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except AttributeError:
        pass
    jax.distributed.initialize(
        f"127.0.0.1:{port}", num_processes=num_processes, process_id=process_id, initialization_timeout=60
    )
    try:
        assert jax.process_count() == num_processes and jax.device_count() == 8, (jax.process_count(), jax.devices())
        run = _problem()
        trace = run(Mesh(np.array(jax.devices()), ("chain",)))
        np.savez(out + ".npz", **{"chain8/loss": trace.loss, "chain8/loss_at_center": trace.loss_at_center})
        with open(out + ".json", "w") as f:
            json.dump(
                {
                    "layout": {"chain8": _layout(trace.final_state)},
                    "process_count": jax.process_count(),
                    "local_devices": jax.local_device_count(),
                },
                f,
            )
    finally:
        jax.distributed.shutdown()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--process-id", type=int)
    parser.add_argument("--num-processes", type=int, default=2)
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    if args.process_id is None:
        single(args.out)
    else:
        distributed(args.out, args.process_id, args.num_processes, args.port)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
