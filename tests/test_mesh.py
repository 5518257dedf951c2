"""The driver on device meshes: ``mesh=`` gives the same chains on 1, 2, 4 and 8 devices, and on two processes.

The numbers depend only on the key and the step (per-chain keys), so a mesh changes only how many chains one
device runs side by side. That vectorization width can change float32 rounding of the loss at the ulp level
(the 8-device run, one chain per device, is bitwise the one-process run with ``chain_batch_size=1``; a
"model" axis splits the parameter contractions). Such runs are compared within a few ulps of the losses.

A CPU device count must be set before JAX starts, so the runs happen in subprocesses (tests/_mesh_worker.py).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from jax.sharding import Mesh

WORKER = Path(__file__).with_name("_mesh_worker.py")
ROOT = WORKER.parent.parent
TIMEOUT = 240  # seconds per worker process (a run takes ~25 s on two cores)


def _env(devices: int) -> dict:
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _load(out: Path) -> tuple[dict, dict]:
    with np.load(f"{out}.npz") as z:
        traces = dict(z)
    return traces, json.loads(Path(f"{out}.json").read_text())


def _ulps(reference: np.ndarray, k: int) -> float:
    """``k`` float32 ulps at the largest |value| of ``reference``."""
    return float(k * np.spacing(np.float32(np.max(np.abs(reference)))))


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("mesh") / "single"
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(out)], env=_env(8), cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return _load(out)


@pytest.mark.parametrize("devices", [1, 2, 4, 8])
def test_chain_mesh_gives_the_same_chains(single, devices):
    traces, info = single
    ref, cb1 = traces["none/loss"], traces["none_cb1/loss"]
    for field in ("loss", "loss_at_center"):
        got = traces[f"chain{devices}/{field}"]
        assert got.shape == ref.shape == (8, 1500)
        if devices < 8:  # the same vectorization width per device as the no-mesh run: bitwise
            np.testing.assert_array_equal(got, traces[f"none/{field}"])
        else:  # one chain per device: bitwise the chain_batch_size=1 run, within 8 ulps of the no-mesh run
            np.testing.assert_array_equal(got, traces[f"none_cb1/{field}"])
            np.testing.assert_allclose(got, traces[f"none/{field}"], rtol=0, atol=_ulps(ref, 8))
    assert np.array_equal(cb1, ref) or np.max(np.abs(cb1 - ref)) <= _ulps(ref, 8)

    for leaf in info["layout"][f"chain{devices}"]:  # the final state really is spread over the devices
        assert leaf["devices"] == devices
        assert leaf["shard_shape"][0] == 8 // devices
        if devices > 1:
            assert leaf["spec"][0] == "chain"


def test_chain_and_model_mesh(single):
    traces, info = single
    ref = traces["none/loss"]
    for field in ("loss", "loss_at_center"):
        np.testing.assert_allclose(
            traces[f"chain4_model2/{field}"], traces[f"none/{field}"], rtol=0, atol=_ulps(ref, 8)
        )
    layout = info["layout"]["chain4_model2"]
    assert [leaf["shape"] for leaf in layout] == [[8, 2, 3], [8, 3, 2]]
    for leaf in layout:  # chains over "chain", the parameter dimension of size 2 over "model"
        assert leaf["devices"] == 8
        assert leaf["spec"][0] == "chain" and leaf["spec"][leaf["shape"].index(2, 1)] == "model"
        assert leaf["shard_shape"] == [2] + [1 if s == 2 else s for s in leaf["shape"][1:]]


def test_mesh_errors(single):
    _, info = single
    errors = info["errors"]
    assert "`num_chains` (6) must be a multiple" in errors["num_chains"] and "'chain' axis (4)" in errors["num_chains"]
    assert "`chain_batch_size` (2) must be a multiple" in errors["chain_batch_size"]
    assert "axes must be among 'chain', 'model', 'data'" in errors["axis_name"] and "chains" in errors["axis_name"]
    assert "must be a jax.sharding.Mesh" in errors["not_a_mesh"]


def test_mesh_errors_in_process(small_dln):
    """The checks come before any work (a one-device mesh in this process)."""
    import jax

    import slt
    from slt._src.driver import run_chains

    target = slt.targets.make_target(small_dln.loss_fn, small_dln.params, small_dln.data)
    with pytest.raises(ValueError, match="axes must be among"):
        run_chains(
            target,
            key=jax.random.key(0),
            example_losses_at_center=np.zeros(500),
            nbeta=1.0,
            localization=1.0,
            num_chains=2,
            num_steps=10,
            batch_size=5,
            mesh=Mesh(np.array(jax.devices()[:1]), ("x",)),
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_processes(out: Path, num_processes: int) -> list[subprocess.CompletedProcess]:
    port = _free_port()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                f"{out}_{i}",
                "--process-id",
                str(i),
                "--num-processes",
                str(num_processes),
                "--port",
                str(port),
            ],
            env=_env(8 // num_processes),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(num_processes)
    ]
    results = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=TIMEOUT)
            results.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    finally:
        for p in procs:  # only the processes started here, on a timeout or a failure of another
            if p.poll() is None:
                p.kill()
                p.communicate()
    return results


def test_two_processes_match_one(single, tmp_path):
    """Two jax.distributed processes × 4 CPU devices, one global 8-device "chain" mesh: the records reach every
    process, bitwise the one-process 8-device run."""
    out = tmp_path / "dist"
    for _attempt in range(2):  # a free port can be taken between choosing it and binding it
        results = _run_processes(out, 2)
        if all(r.returncode == 0 for r in results):
            break
    for i, r in enumerate(results):
        assert r.returncode == 0, f"process {i}:\n{r.stderr[-4000:]}"
    traces, _ = single
    for i in range(2):
        got, info = _load(Path(f"{out}_{i}"))
        assert info["process_count"] == 2 and info["local_devices"] == 4
        for field in ("loss", "loss_at_center"):
            np.testing.assert_array_equal(got[f"chain8/{field}"], traces[f"chain8/{field}"])
        for leaf in info["layout"]["chain8"]:  # the final state spans both processes
            assert leaf["devices"] == 8 and leaf["shard_shape"][0] == 1 and not leaf["fully_addressable"]
