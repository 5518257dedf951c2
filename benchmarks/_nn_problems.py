"""Small nonlinear networks trained to a minimum in float64: the problems of ``benchmarks/nn_accuracy.py``.

Each problem is a student network larger than the teacher that generated its data (so the student is singular
at its minimum), written as a plain ``loss_fn(params, batch)`` with ``params`` a dict of arrays: the batch mean
of a per-example Gaussian negative log-likelihood with known noise σ (up to the constant ``log(2πσ²)/2`` per
output, which does not change λ̂), plus a small weight decay (a Gaussian prior term, the same for every example):

    L(w; x, y) = ‖y − f_w(x)‖² / (2σ²) + (α/2)‖w‖²,   σ = 1, α = 1e-3.

Without the weight decay the MLPs' loss has no minimum: saturated units that fit the noise run off to
infinity (weights in the hundreds after training, gradient never below 1e-3). With it, nβα ≈ 0.26 at n = 2000,
below every γ of the benchmark, so the nearly flat directions stay nearly flat.

* ``tanh``: a 2 → 8 → 1 tanh MLP (d = 33), teacher 2 → 3 → 1.
* ``gelu``: a 3 → 10 → 2 GELU MLP (d = 62), teacher 3 → 4 → 2.
* ``attention``: one single-head self-attention block softmax(q kᵀ/√h) v W_o with q, k, v = x W_{q,k,v}, on
  sequences of T = 4 tokens of width D = 4, head width h = 2 (W_q, W_k, W_v: 4 × 2, W_o: 2 × 4; d = 32); teacher
  of head width 1. Its loss is invariant under W_q → W_q A, W_k → W_k A⁻ᵀ and W_v → W_v B, W_o → B⁻¹ W_o
  (A, B ∈ GL(2)); the weight decay leaves the orthogonal ones, so the Hessian has two exactly flat directions.

Inputs are standard normal, n = 2000 by default; the data are generated from a numpy seed (no downloads). The
student is trained in float64 (``jax.enable_x64`` locally): full-batch Adam from a small random start, then
L-BFGS, then Levenberg-Marquardt steps on the Hessian (d ≤ 62, so the Hessian is cheap) until the gradient norm
of L_n is below ``grad_tol`` = 1e-10. The problem records the gradient norm and the Hessian's extreme eigenvalues
at w*, so a saddle (a clearly negative eigenvalue) would be visible.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

NOISE_STD = 1.0
WEIGHT_DECAY = 1e-3  # without it the MLPs' loss has no minimum (saturated units run off to infinity)
PROBLEMS = ("tanh", "gelu", "attention")


def _x64():
    if hasattr(jax, "enable_x64"):  # jax >= 0.10: a config context manager
        return jax.enable_x64(True)
    from jax.experimental import enable_x64

    return enable_x64()


# ---------------------------------------------------------------------------------------------- networks


def _mlp(params, x, act):
    return act(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]


def _attention(params, x):
    """Single-head self-attention, x: (n, T, D) -> (n, T, D): softmax(q kᵀ/√h) v W_o with q, k, v = x W_{q,k,v}.

    Computed as softmax(x (W_q W_kᵀ/√h) xᵀ) x (W_v W_o), in a (T, D, n) layout with the loops over the T
    positions unrolled: the same function (to rounding), about twice as fast on CPU at these tiny sizes as
    batched matrix products.
    """
    n, T, D = x.shape
    xt = jnp.transpose(x, (1, 2, 0))  # (T, D, n)
    qk = params["wq"] @ params["wk"].T / math.sqrt(params["wq"].shape[-1])  # (D, D)
    xq = jnp.einsum("ij,tin->tjn", qk, xt)
    mixed = []
    for t in range(T):
        logits = jnp.stack([jnp.sum(xq[t] * xt[s], axis=0) for s in range(T)])  # (T, n)
        attn = jax.nn.softmax(logits, axis=0)
        mixed.append(jnp.sum(attn[:, None, :] * xt, axis=0))  # (D, n)
    return jnp.einsum("ij,tin->ntj", params["wv"] @ params["wo"], jnp.stack(mixed))


def _gaussian_nll(pred, y):
    """Batch mean of ‖y − pred‖² / (2σ²) (summed over every output of an example)."""
    r = y - pred
    return jnp.mean(jnp.sum(r * r, axis=tuple(range(1, r.ndim)))) / (2 * NOISE_STD**2)


def _weight_decay(params):
    """(α/2)‖w‖²: a Gaussian prior term, the same for every example, so the batch mean keeps it."""
    return 0.5 * WEIGHT_DECAY * sum(jnp.sum(a * a) for a in jax.tree_util.tree_leaves(params))


def tanh_loss(params, batch):
    x, y = batch
    return _gaussian_nll(_mlp(params, x, jnp.tanh), y) + _weight_decay(params)


def gelu_loss(params, batch):
    x, y = batch
    return _gaussian_nll(_mlp(params, x, jax.nn.gelu), y) + _weight_decay(params)


def attention_loss(params, batch):
    x, y = batch
    return _gaussian_nll(_attention(params, x), y) + _weight_decay(params)


def _mlp_params(rng, sizes, scale):
    n_in, n_hidden, n_out = sizes
    return {
        "w1": rng.standard_normal((n_in, n_hidden)) * scale / math.sqrt(n_in),
        "b1": rng.standard_normal(n_hidden) * scale * 0.5,
        "w2": rng.standard_normal((n_hidden, n_out)) * scale / math.sqrt(n_hidden),
        "b2": rng.standard_normal(n_out) * scale * 0.5,
    }


def _attention_params(rng, width, head, scale):
    return {
        "wq": rng.standard_normal((width, head)) * scale,
        "wk": rng.standard_normal((width, head)) * scale,
        "wv": rng.standard_normal((width, head)) * scale / math.sqrt(width),
        "wo": rng.standard_normal((head, width)) * scale / math.sqrt(head),
    }


# ---------------------------------------------------------------------------------------------- training


@dataclasses.dataclass
class NNProblem:
    """A student network at a float64 minimum of its loss.

    ``params`` / ``data`` are numpy float64 (pass them to ``nuts_llc``, which computes in float64);
    :meth:`params32` / :meth:`data32` are the float32 jax arrays for ``estimate_llc``.
    """

    name: str
    description: str
    loss_fn: Callable
    params: dict
    data: tuple
    teacher: dict
    num_parameters: int
    loss_at_minimum: float  # L_n(w*) in float64
    grad_norm: float  # ‖∇L_n(w*)‖ in float64
    hessian_eigs: tuple  # (smallest, largest) eigenvalue of ∇²L_n(w*)
    num_small_eigs: int  # eigenvalues of ∇²L_n below 1e-6 · largest (near-flat directions)
    train_seconds: float

    @property
    def num_data(self) -> int:
        return int(self.data[0].shape[0])

    def params32(self):
        return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), self.params)

    def data32(self):
        return tuple(jnp.asarray(a, jnp.float32) for a in self.data)

    def fingerprint(self) -> str:
        """L_n(w*) to 12 digits: identifies the trained point (and data) for the NUTS cache."""
        return f"{self.loss_at_minimum:.12g}"


def minimize(loss_fn, params0, data, *, adam_steps=4000, lr=1e-2, lbfgs_steps=2000, newton_steps=200, grad_tol=1e-10):
    """Adam, then L-BFGS, then Levenberg-Marquardt steps, all full batch in float64; numpy params out."""
    with _x64():
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params0)
        data = tuple(jnp.asarray(a, jnp.float64) for a in data)

        def f(p):
            return loss_fn(p, data)

        adam = optax.adam(optax.cosine_decay_schedule(lr, adam_steps, alpha=1e-2))

        @jax.jit
        def run_adam(p):
            def body(carry, _):
                p, s = carry
                g = jax.grad(f)(p)
                u, s = adam.update(g, s, p)
                return (optax.apply_updates(p, u), s), None

            (p, _), _ = jax.lax.scan(body, (p, adam.init(p)), None, length=adam_steps)
            return p

        params = run_adam(params)

        lbfgs = optax.lbfgs(memory_size=20)
        value_and_grad = optax.value_and_grad_from_state(f)

        @jax.jit
        def run_lbfgs(p, s):
            def cond(carry):
                i, p, s, gnorm = carry
                return (i < lbfgs_steps) & (gnorm > grad_tol)

            def body(carry):
                i, p, s, _ = carry
                v, g = value_and_grad(p, state=s)
                u, s = lbfgs.update(g, s, p, value=v, grad=g, value_fn=f)
                p = optax.apply_updates(p, u)
                return i + 1, p, s, optax.tree.norm(jax.grad(f)(p))

            return jax.lax.while_loop(cond, body, (0, p, s, jnp.inf))

        _, params, _, _ = run_lbfgs(params, lbfgs.init(params))

        flat, unravel = ravel_pytree(params)

        def f_flat(w):
            return f(unravel(w))

        loss_fn_flat, grad_fn, hess_fn = jax.jit(f_flat), jax.jit(jax.grad(f_flat)), jax.jit(jax.hessian(f_flat))
        best, best_loss = flat, float(loss_fn_flat(flat))
        best_norm, damping = float(jnp.linalg.norm(grad_fn(flat))), 1e-6
        for _ in range(newton_steps):  # Levenberg-Marquardt on the Hessian's eigenbasis (handles saddles)
            if best_norm < grad_tol:
                break
            evals, evecs = jnp.linalg.eigh(hess_fn(best))
            scale = float(jnp.max(jnp.abs(evals)))
            cand = best - evecs @ ((evecs.T @ grad_fn(best)) / (jnp.abs(evals) + damping * scale))
            cand_loss = float(loss_fn_flat(cand))
            if cand_loss <= best_loss:
                best, best_loss = cand, cand_loss
                best_norm = float(jnp.linalg.norm(grad_fn(best)))
                damping = max(damping / 10, 1e-15)
            else:
                damping *= 10
        evals = np.asarray(jnp.linalg.eigvalsh(hess_fn(best)))
        loss = float(f_flat(best))
        out = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), unravel(best))
    n_small = int(np.sum(evals < 1e-6 * evals[-1]))
    return out, loss, best_norm, (float(evals[0]), float(evals[-1])), n_small


def make_problem(name: str, *, num_data: int = 2000, seed: int = 0) -> NNProblem:
    """Generate the data from the teacher (numpy seed ``seed``) and train the student to a minimum."""
    rng = np.random.default_rng([seed, PROBLEMS.index(name)])
    if name == "tanh":
        teacher = _mlp_params(rng, (2, 3, 1), scale=2.0)
        student = _mlp_params(rng, (2, 8, 1), scale=0.5)
        x = rng.standard_normal((num_data, 2))
        clean = np.asarray(_mlp(teacher, x, np.tanh))
        loss_fn, desc = tanh_loss, "tanh MLP 2→8→1 (teacher 2→3→1)"
    elif name == "gelu":
        teacher = _mlp_params(rng, (3, 4, 2), scale=2.0)
        student = _mlp_params(rng, (3, 10, 2), scale=0.5)
        x = rng.standard_normal((num_data, 3))
        with _x64():
            clean = np.asarray(_mlp(teacher, jnp.asarray(x), jax.nn.gelu))
        loss_fn, desc = gelu_loss, "GELU MLP 3→10→2 (teacher 3→4→2)"
    elif name == "attention":
        teacher = _attention_params(rng, width=4, head=1, scale=1.5)
        student = _attention_params(rng, width=4, head=2, scale=0.3)
        x = rng.standard_normal((num_data, 4, 4))
        with _x64():
            clean = np.asarray(_attention(teacher, jnp.asarray(x)))
        loss_fn, desc = attention_loss, "self-attention, 1 head, T=4, D=4, d_head=2 (teacher d_head=1)"
    else:
        raise ValueError(f"unknown problem {name!r}; one of {PROBLEMS}")
    y = clean + NOISE_STD * rng.standard_normal(clean.shape)
    data = (x, y)
    start = time.perf_counter()
    params, loss, gnorm, eigs, n_small = minimize(loss_fn, student, data)
    return NNProblem(
        name=name,
        description=desc,
        loss_fn=loss_fn,
        params=params,
        data=data,
        teacher=teacher,
        num_parameters=int(sum(np.size(a) for a in params.values())),
        loss_at_minimum=loss,
        grad_norm=gnorm,
        hessian_eigs=eigs,
        num_small_eigs=n_small,
        train_seconds=time.perf_counter() - start,
    )


if __name__ == "__main__":
    for name in PROBLEMS:
        p = make_problem(name)
        print(
            f"{p.name}: {p.description}, d = {p.num_parameters}, n = {p.num_data}, L_n(w*) = {p.loss_at_minimum:.6f}, "
            f"|grad| = {p.grad_norm:.2e}, Hessian eigs [{p.hessian_eigs[0]:.2e}, {p.hessian_eigs[1]:.2e}], "
            f"{p.num_small_eigs} below 1e-6·max, trained in {p.train_seconds:.1f} s",
            flush=True,
        )
