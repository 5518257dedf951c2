"""λ̂ at rescaled points: (W1, b1, W2) -> (c W1, c b1, W2 / c) computes the same function, so λ is the same,
while the weight norm changes. The estimator's target E_β,γ[nβ(L − L*)] is not invariant (isotropic γ and
isotropic noise see the rescaled geometry): this measures how far it moves, with exact NUTS and with SGLD.

    .venv/bin/python benchmarks/rescaling_llc.py        # ~5 min on 2 CPU cores

Models: a two-layer linear network, widths (3, 2, 3), rank 2, at its least-squares factorization (λ = 4 by
Aoyagi, slt.theory.dln), n = 1000; and a ReLU MLP 2-4-1 with hidden biases, trained with Adam to a minimum of a
teacher of the same shape (n = 1000, noise σ = 1): each hidden unit has one positive-rescaling direction, so if
the minimum is otherwise regular λ = (d − 4)/2 = 6 (d = 16). nβ = n / log n, γ = 1.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import slt

jax.config.update("jax_enable_x64", False)


def relu_mlp(params, x):
    w1, b1, w2 = params
    return jax.nn.relu(x @ w1.T + b1) @ w2.T


def relu_loss(params, batch):
    x, y = batch
    return 0.5 * jnp.mean(jnp.sum((y - relu_mlp(params, x)) ** 2, axis=-1))


def relu_problem(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    teacher = [rng.standard_normal((4, 2)), rng.uniform(0.2, 0.5, 4), rng.standard_normal((1, 4))]
    x = rng.standard_normal((n, 2))
    y = relu_mlp(teacher, x) + rng.standard_normal((n, 1))
    data = (jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    params = [jnp.asarray(t, jnp.float32) for t in teacher]
    tx = optax.adam(3e-3)
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        g = jax.grad(relu_loss)(params, data)
        u, state = tx.update(g, state)
        return optax.apply_updates(params, u), state

    for _ in range(20000):
        params, state = step(params, state)
    grad = jax.grad(relu_loss)(params, data)
    gnorm = float(np.sqrt(sum(np.sum(np.square(g)) for g in grad)))
    return params, data, gnorm


def rescale(params, c):
    w1, b1, w2 = params
    return [c * w1, c * b1, w2 / c]


def main():
    rows = []
    key = jax.random.key(0)
    sgld = dict(localization=1.0, num_chains=4, num_draws=8000, num_burnin=2000)
    p = slt.models.deep_linear_network([3, 2, 3], 2, num_data=1000, seed=0)
    w1, w2 = p.params
    for c in (1.0, 2.0, 4.0):
        ckpt = [c * w1, w2 / c]
        t0 = time.time()
        nuts = slt.ground_truth.nuts_llc(
            p.loss_fn, ckpt, p.data, key=key, localization=1.0, num_chains=4, num_burnin=500, num_draws=1000
        )
        res = slt.estimate_llc(p.loss_fn, ckpt, p.data, key=key, step_size=5e-4 / c**2, batch_size=1000, **sgld)
        norm = slt.dynamics.weight_norms(ckpt)[0]
        rows.append(("linear (3,2,3) r=2, λ=4", c, norm, nuts, res, time.time() - t0))
        print(
            rows[-1][0],
            c,
            f"|w| {norm:.3f} NUTS {nuts.llc_mean:.3f}±{nuts.llc_mcse:.3f} "
            f"SGLD(ε={5e-4 / c**2:.2g}) {res.llc_mean:.3f}±{res.llc_mcse:.3f}",
            flush=True,
        )
    for c in (1.0, 4.0):  # a larger γ: the estimator's target moves with the parametrization
        ckpt = [c * w1, w2 / c]
        nuts = slt.ground_truth.nuts_llc(
            p.loss_fn, ckpt, p.data, key=key, localization=10.0, num_chains=4, num_burnin=500, num_draws=1000
        )
        print(f"linear, γ = 10, c = {c:g}: NUTS {nuts.llc_mean:.3f} ± {nuts.llc_mcse:.3f}", flush=True)
    params, data, gnorm = relu_problem()
    print(f"ReLU MLP trained: |grad L_n| = {gnorm:.2e}, hidden pre-activation biases {np.asarray(params[1])}")
    for c in (1.0, 2.0):
        ckpt = rescale(params, c)
        t0 = time.time()
        nuts = slt.ground_truth.nuts_llc(
            relu_loss, ckpt, data, key=key, localization=1.0, num_chains=4, num_burnin=500, num_draws=1000
        )
        res = slt.estimate_llc(relu_loss, ckpt, data, key=key, step_size=2.5e-4 / c**2, batch_size=1000, **sgld)
        norm = slt.dynamics.weight_norms(ckpt)[0]
        rows.append(("ReLU MLP 2-4-1 (d=16)", c, norm, nuts, res, time.time() - t0))
        print(
            rows[-1][0],
            c,
            f"|w| {norm:.3f} NUTS {nuts.llc_mean:.3f}±{nuts.llc_mcse:.3f} "
            f"SGLD(ε={2.5e-4 / c**2:.2g}) {res.llc_mean:.3f}±{res.llc_mcse:.3f}",
            flush=True,
        )
    print("\n| model | c | ‖w‖ | NUTS λ̂ ± MCSE | SGLD λ̂ ± MCSE (ε) |\n|---|---|---|---|---|")
    for name, c, norm, nuts, res, _ in rows:
        print(
            f"| {name} | {c:g} | {norm:.3f} | {nuts.llc_mean:.3f} ± {nuts.llc_mcse:.3f} | "
            f"{res.llc_mean:.3f} ± {res.llc_mcse:.3f} ({res.step_size:.2g}) |"
        )


if __name__ == "__main__":
    main()
