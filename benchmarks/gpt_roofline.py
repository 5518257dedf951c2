"""How close the per-draw work on peer_gpt.py's GPT comes to this machine's arithmetic peak, in JAX and in torch.

The goal of issue #12 (slt at least 2x faster per draw than the PyTorch peer on CPU) is bounded by arithmetic:
one SGLD draw is one minibatch gradient, whose floating-point operations XLA counts (``cost_analysis``). This
script measures, in one process:

* FLOPs of one draw (one chain, 32 sequences x 32 tokens): forward + backward of ``slt.models.GPT``;
* the JAX floor (``jit(vmap(scan SGLD))``, benchmarks/speed.py) per draw, and its GFLOP/s;
* the bare PyTorch SGLD loop on the same model (``_devinterp_gpt.TorchGPT``) on 1 and 2 threads, when torch is
  importable (``.venv-devinterp2``);
* the machine's peak: a large float32 matmul (2048^3) in JAX and in torch (1 and 2 threads), and a matmul of the
  model's own shapes (1024 tokens x 64 -> 256, four chains batched).

    .venv-devinterp2/bin/python benchmarks/gpt_roofline.py
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import slt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_gpt import BATCH_SIZE, CONFIG, LOCALIZATION, NUM_SEQUENCES, SEED, T  # noqa: E402
from speed import make_floor  # noqa: E402

CHAINS, DRAWS, STEP = 4, 200, 1e-3


def best_of(fn, repeats=5):
    fn()  # warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def jax_matmul_gflops(m, k, n, batch=1):
    a = jnp.ones((batch, m, k), jnp.float32)
    b = jnp.ones((batch, k, n), jnp.float32)
    f = jax.jit(lambda a, b: a @ b)
    return 2 * batch * m * k * n / best_of(lambda: f(a, b).block_until_ready()) / 1e9


def torch_matmul_gflops(torch, m, k, n, batch=1):
    a, b = torch.ones(batch, m, k), torch.ones(batch, k, n)
    return 2 * batch * m * k * n / best_of(lambda: a @ b) / 1e9


def main() -> int:
    print(f"JAX {jax.__version__} on {jax.devices()[0]}; {os.cpu_count()} CPUs; load {os.getloadavg()}")
    lang = slt.models.SyntheticLanguage(CONFIG["vocab_size"], seed=SEED)
    tokens = lang.sample(jax.random.key(1), NUM_SEQUENCES, T + 1).tokens
    data = slt.models.lm_data(tokens)
    model = slt.models.GPT(slt.models.GPTConfig(**CONFIG), rngs=nnx.Rngs(SEED))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    num_params = sum(x.size for x in jax.tree_util.tree_leaves(params))

    def loss_fn(p, batch):
        return slt.models.token_cross_entropy(nnx.merge(graphdef, p, rest)(batch[0]), batch[1])

    batch = jax.tree_util.tree_map(lambda x: x[:BATCH_SIZE], data)
    grad = jax.jit(jax.value_and_grad(loss_fn))
    cost = grad.lower(params, batch).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost["flops"])
    print(
        f"GPT {num_params} parameters; one draw (value and gradient on {BATCH_SIZE} x {T} tokens): "
        f"{flops / 1e6:.0f} MFLOP (XLA cost analysis; 6 x params x tokens = "
        f"{6 * num_params * BATCH_SIZE * T / 1e6:.0f})"
    )

    nbeta = NUM_SEQUENCES / math.log(NUM_SEQUENCES)
    floor = make_floor(
        loss_fn, num_steps=DRAWS, batch_size=BATCH_SIZE, step_size=STEP, nbeta=nbeta, localization=LOCALIZATION
    )
    keys = jax.random.split(jax.random.key(SEED), CHAINS)
    t_floor = best_of(lambda: np.asarray(floor(keys, params, data)), repeats=3) / (CHAINS * DRAWS)
    t_grad = best_of(lambda: jax.block_until_ready(grad(params, batch)), repeats=20)
    rows = [
        ("JAX floor jit(vmap(scan SGLD)), 4 chains", t_floor),
        ("JAX one jitted value_and_grad call (no vmap, no scan)", t_grad),
    ]

    peaks = [
        ("JAX matmul 2048^3", jax_matmul_gflops(2048, 2048, 2048)),
        ("JAX matmul of the MLP's shape, 4 x (1024 x 64 @ 64 x 256)", jax_matmul_gflops(1024, 64, 256, CHAINS)),
    ]
    try:
        import torch
        from _devinterp_gpt import TorchGPT, token_losses
    except ImportError as err:
        print(f"torch not importable ({err}): JAX rows only")
        torch = None
    if torch is not None:
        weights = {"/".join(map(str, k)).replace("/", "."): np.asarray(v) for k, v in nnx.to_flat_state(params)}
        weights = {k.removesuffix(".value"): v for k, v in weights.items()}
        tmodel = TorchGPT.from_weights(weights, num_heads=CONFIG["num_heads"])
        ttokens = torch.from_numpy(np.asarray(tokens).astype(np.int64))
        tparams = list(tmodel.parameters())
        for threads in (1, 2):
            torch.set_num_threads(threads)

            def draw():
                idx = torch.randint(0, NUM_SEQUENCES, (BATCH_SIZE,))
                loss = token_losses(tmodel, ttokens[idx]).mean()
                grads = torch.autograd.grad(loss, tparams)
                with torch.no_grad():
                    for p, g in zip(tparams, grads):
                        p.add_(g, alpha=-1e-9)
                        p.add_(torch.randn(p.shape), alpha=1e-9)

            rows.append(
                (f"bare PyTorch SGLD step, {threads} thread(s)", best_of(lambda: [draw() for _ in range(50)]) / 50)
            )
            peaks.append((f"torch matmul 2048^3, {threads} thread(s)", torch_matmul_gflops(torch, 2048, 2048, 2048)))
            shape = torch_matmul_gflops(torch, 1024, 64, 256, CHAINS)
            peaks.append((f"torch matmul of the MLP's shape, {threads} thread(s)", shape))
    peak = max(v for _, v in peaks)
    print("\n| peak probe | GFLOP/s |\n|---|---:|")
    for name, v in peaks:
        print(f"| {name} | {v:.0f} |")
    print(f"\n| per draw | ms | GFLOP/s | of the best peak ({peak:.0f}) |\n|---|---:|---:|---:|")
    for name, t in rows:
        print(f"| {name} | {1e3 * t:.2f} | {flops / t / 1e9:.0f} | {flops / t / 1e9 / peak:.0%} |")
    print(f"load after {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
