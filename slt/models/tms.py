r"""The toy model of superposition (TMS) with two hidden dimensions, at its k-gon critical points.

Model (Elhage et al., "Toy Models of Superposition", 2022; Chen, Lau, Mendel, Wei, Murfet, "Dynamical versus
Bayesian Phase Transitions in a Toy Model of Superposition", arXiv 2310.06301):

.. math:: \hat x = f(x; W, b) = \mathrm{ReLU}(W^\top W x + b), \qquad W \in \mathbb R^{2\times c},\ b \in \mathbb R^c,

with c = ``num_features`` (6 by default) and d = 3c parameters. Data as in Chen et al.: each input has
exactly one active feature, :math:`x = \mu e_i` with i uniform on {1, …, c} and :math:`\mu \sim U[0, 1]`.
The per-example loss is the squared error summed over the c outputs,

.. math:: \ell(x; W, b) = \lVert x - f(x; W, b)\rVert^2 \quad(\text{no } \tfrac12, \text{ no division by } c),

and ``loss_fn(params, batch)`` is its batch mean, :math:`L_n = \frac1n\sum_i \ell(x_i)`. With this
normalization the population loss :math:`H = \mathbb E_x[\ell]` at the 5-gon and 6-gon is 0.06874 and
0.04819, the values of Chen et al. (checked in the tests against :func:`population_loss`). As a likelihood,
:math:`\ell` is the Gaussian negative log-likelihood of :math:`x \sim \mathcal N(f(x), \tfrac12 I)` up to a
constant, so free energies and posterior odds built from it are those of that noise level.

k-gon critical points (Chen et al., Sec. 4): the first k columns of W are the vertices of a regular k-gon of radius l,
:math:`W_i = l\,(\cos(2\pi i/k), \sin(2\pi i/k))`, with a common bias :math:`b_i = b^*`; the other c − k columns are
zero ("dead" features) with bias :math:`b_i` either negative (default −4, see :func:`tms`) or, for the
``positive_biases`` σ of them, positive. l and :math:`b^*` minimize the population loss within this symmetric family
(:func:`kgon_radius_and_bias`); for c = 6 that gives l = 1.1705, b* = −0.2823 (5-gon) and l = 1.3205, b* = −0.6181
(6-gon). A positive dead bias sits at 1/(2c), the mean of :math:`x_i`. Because the finite data set breaks the symmetry
slightly, :func:`tms` then takes full-batch Newton steps from that point to the nearby critical point of :math:`L_n`
(gradient ~1e-8 in float32).

Learning coefficient (derived here from the Hessian; Chen et al. report λ = 7 for the 5-gon and 8.5 for the
6-gon, and 8.5 for the 5-gon with one positive dead bias). At a k-gon with :math:`b^* < 0` (k ≥ 5):

* a dead feature with negative bias is exactly flat in its three parameters :math:`(W_i, b_i)`: for small
  :math:`W_i` every ReLU it feeds stays switched off, so the loss does not change;
* a dead feature with positive bias is regular in those three parameters (its output is the affine
  function :math:`W_i^\top W x + b_i`, and the linear term vanishes because the k-gon's columns sum to 0);
* the live part is regular except for the rotation :math:`W \mapsto RW` (one flat direction).

So the set of minimizers near w* is a smooth manifold of dimension :math:`1 + 3(c - k - \sigma)`, the Hessian is
non-degenerate across it (checked numerically in the tests), and

.. math:: \lambda = \frac{d - 1 - 3(c - k - \sigma)}{2} = \frac{3(k + \sigma) - 1}{2}, \qquad m = 1,

which gives 7 (5-gon), 8.5 (6-gon) and 8.5 (5-gon with one positive dead bias) for c = 6. For k ≤ 4 the
optimal bias is b* = 0, a ReLU kink sits exactly at w*, and this formula does not apply; those k are refused,
as are k > 8, where the Hessian structure is not checked (from k ≈ 9 its smallest non-zero eigenvalues are
~1e-3, so finite-n estimates would not see the asymptotic value anyway).
"""

from __future__ import annotations

import functools
from fractions import Fraction

import jax
import jax.flatten_util  # noqa: F401  (jax.flatten_util.ravel_pytree)
import jax.numpy as jnp
import numpy as np

from slt._src import validate
from slt.models._problem import ReferenceProblem

__all__ = [
    "kgon_llc",
    "kgon_params",
    "kgon_radius_and_bias",
    "population_loss",
    "tms",
    "tms_data",
    "tms_forward",
    "tms_init",
    "tms_linear_forward",
    "tms_linear_loss",
    "tms_loss",
    "train_tms",
]

NUM_HIDDEN = 2
DEFAULT_DEAD_BIAS = -4.0  # see `tms(dead_bias=...)`
MIN_K, MAX_K = 5, 8  # k-gons whose Hessian structure (hence λ) is checked in tests/test_tms.py


# --------------------------------------------------------------------------------------------- model
def tms_forward(params, x: jax.Array) -> jax.Array:
    r""":math:`\mathrm{ReLU}(W^\top W x + b)` for rows of ``x`` (n, c); ``params = {"W": (2, c), "b": (c,)}``."""
    w, b = params["W"], params["b"]
    return jax.nn.relu((x @ w.T) @ w + b)


def tms_loss(params, batch: jax.Array) -> jax.Array:
    r"""Batch mean of :math:`\lVert x - \mathrm{ReLU}(W^\top W x + b)\rVert^2` (summed over features); ``batch = x``."""
    residual = batch - tms_forward(params, batch)
    return jnp.mean(jnp.sum(jnp.square(residual), axis=-1))


def tms_linear_forward(params, x: jax.Array) -> jax.Array:
    r""":math:`W^\top W x + b`: the control without the ReLU. A linear map through h < c dimensions can only keep
    the top-h principal subspace of the data (PCA), so it does not superpose features (Elhage et al. 2022)."""
    return (x @ params["W"].T) @ params["W"] + params["b"]


def tms_linear_loss(params, batch: jax.Array) -> jax.Array:
    r"""Batch mean of :math:`\lVert x - (W^\top W x + b)\rVert^2`, the linear control of :func:`tms_loss`."""
    residual = batch - tms_linear_forward(params, batch)
    return jnp.mean(jnp.sum(jnp.square(residual), axis=-1))


def tms_data(num_features: int, num_data: int, seed: int = 0) -> jax.Array:
    r"""Chen et al.'s data, (n, c) float32: each row :math:`x = \mu e_i`, i uniform on the c features,
    :math:`\mu \sim U[0, 1]` (numpy ``default_rng(seed)``: the same seed and sizes give the same data).

    Example:
        >>> import numpy as np, slt
        >>> x = slt.models.tms_data(4, 5, seed=0)
        >>> x.shape, np.count_nonzero(np.asarray(x), axis=1).tolist()
        ((5, 4), [1, 1, 1, 1, 1])
    """
    validate.int_at_least(num_features, "num_features", 2)
    validate.int_at_least(num_data, "num_data", 1)
    rng = np.random.default_rng(seed)
    active = rng.integers(num_features, size=num_data)
    magnitude = rng.uniform(0.0, 1.0, size=num_data)
    x = np.zeros((num_data, num_features), np.float32)
    x[np.arange(num_data), active] = magnitude
    return jnp.asarray(x)


def tms_init(key, num_features: int, num_hidden: int = NUM_HIDDEN, *, scale: float = 0.1) -> dict:
    r"""A random start for training: :math:`W_{ij} \sim \mathcal N(0, \text{scale}^2)` of shape (h, c), b = 0.

    Example:
        >>> import jax, slt
        >>> p = slt.models.tms_init(jax.random.key(0), num_features=8, num_hidden=3)
        >>> p["W"].shape, p["b"].shape
        ((3, 8), (8,))
    """
    validate.int_at_least(num_features, "num_features", 2)
    validate.int_at_least(num_hidden, "num_hidden", 1)
    scale = validate.positive_float(scale, "scale")
    w = scale * jax.random.normal(key, (num_hidden, num_features), jnp.float32)
    return {"W": w, "b": jnp.zeros((num_features,), jnp.float32)}


def train_tms(
    params: dict,
    data: jax.Array,
    *,
    key,
    num_steps: int,
    learning_rate: float = 1e-3,
    batch_size: int = 1024,
    linear: bool = False,
    record_steps=None,
    optimizer=None,
) -> tuple[list[dict], np.ndarray, np.ndarray]:
    r"""Train the TMS (or its linear control) with optax (Adam by default) on minibatches drawn with replacement.

    Returns ``(checkpoints, steps, losses)``: the parameters at each of ``record_steps`` (default: 40
    log-spaced steps from 0 to ``num_steps``), those steps, and the full-data loss there. The training steps
    between records run in one jitted loop whose length is traced (one compile for the whole run).

    Example:
        >>> import jax, slt
        >>> x = slt.models.tms_data(6, 1000, seed=0)
        >>> start = slt.models.tms_init(jax.random.key(0), 6)
        >>> ckpts, steps, losses = slt.models.train_tms(start, x, key=jax.random.key(1), num_steps=200,
        ...                                             record_steps=[0, 100, 200])
        >>> steps.tolist(), bool(losses[-1] < losses[0])
        ([0, 100, 200], True)
    """
    import optax

    num_steps = validate.positive_int(num_steps, "num_steps")
    batch_size = validate.positive_int(batch_size, "batch_size")
    loss_fn = tms_linear_loss if linear else tms_loss
    if record_steps is None:
        record_steps = np.unique(np.concatenate([[0], np.geomspace(1, num_steps, 39).round()]).astype(int))
    record_steps = np.asarray(record_steps, dtype=int)
    if (
        record_steps.ndim != 1
        or np.any(np.diff(record_steps) <= 0)
        or record_steps[0] < 0
        or record_steps[-1] > num_steps
    ):
        raise ValueError(
            f"`record_steps` must be increasing integers in [0, num_steps = {num_steps}]; got {record_steps.tolist()}."
        )
    opt = optax.adam(learning_rate) if optimizer is None else optimizer
    n = data.shape[0]

    @jax.jit
    def advance(params, state, key, start, stop):
        def step(t, carry):
            params, state = carry
            batch = data[jax.random.randint(jax.random.fold_in(key, t), (batch_size,), 0, n)]
            grads = jax.grad(loss_fn)(params, batch)
            updates, state = opt.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        return jax.lax.fori_loop(start, stop, step, (params, state))

    state = opt.init(params)
    checkpoints, losses, done = [], [], 0
    for r in record_steps:
        if r > done:  # step t draws its minibatch from fold_in(key, t): the records do not change the run
            params, state = advance(params, state, key, done, int(r))
            done = int(r)
        checkpoints.append(params)
        losses.append(float(loss_fn(params, data)))
    return checkpoints, record_steps, np.asarray(losses)


def population_loss(params, xp=jnp):
    r"""The population loss :math:`H(W, b) = \mathbb E_x \lVert x - f(x)\rVert^2` in closed form.

    For :math:`x = \mu e_j` the i-th output is :math:`\mathrm{ReLU}(a_{ij}\mu + b_i)` with
    :math:`a = W^\top W`, so
    :math:`H = \frac1c\sum_{i,j}\int_0^1 (\delta_{ij}\mu - \mathrm{ReLU}(a_{ij}\mu + b_i))^2 d\mu`.
    Each integrand is a quadratic on either side of its kink :math:`\mu = -b_i/a_{ij}`, so Simpson's rule on
    the two pieces is exact. ``xp`` is the array module: ``jax.numpy`` (default; differentiable, used to
    check the Hessians) or ``numpy`` (float64, used to place the k-gons).
    """
    w, b = xp.asarray(params["W"]), xp.asarray(params["b"])
    c = w.shape[1]
    a = w.T @ w  # a[i, j]: coefficient of mu in output i when feature j is active
    bias = xp.broadcast_to(b[:, None], a.shape)
    delta = xp.eye(c, dtype=a.dtype)
    safe_a = xp.where(a == 0, 1.0, a)
    kink = xp.where(a == 0, 0.0, xp.clip(-bias / safe_a, 0.0, 1.0))

    def integrand(mu):
        return xp.square(delta * mu - xp.maximum(a * mu + bias, 0.0))

    def simpson(lo, hi):
        return (hi - lo) / 6.0 * (integrand(lo) + 4.0 * integrand(0.5 * (lo + hi)) + integrand(hi))

    return xp.sum(simpson(0.0, kink) + simpson(kink, 1.0)) / c


# ------------------------------------------------------------------------------------------ k-gons
def kgon_params(k: int, radius, bias, *, num_features: int = 6, dead_biases=None) -> dict:
    """W with columns 0..k-1 at the vertices of a regular k-gon of ``radius`` (vertex 0 on the first axis),
    the others zero; ``b`` equal to ``bias`` on the live features and ``dead_biases`` (length c − k) on the rest."""
    angles = 2.0 * jnp.pi * jnp.arange(k) / k
    live = radius * jnp.stack([jnp.cos(angles), jnp.sin(angles)])
    w = jnp.zeros((NUM_HIDDEN, num_features)).at[:, :k].set(live)
    dead = jnp.full((num_features - k,), bias) if dead_biases is None else jnp.asarray(dead_biases, jnp.float32)
    b = jnp.concatenate([jnp.full((k,), bias), dead]).astype(jnp.float32)
    return {"W": w.astype(jnp.float32), "b": b}


def _kgon_numpy(k: int, num_features: int, radius: float, bias: float) -> dict:
    angles = 2.0 * np.pi * np.arange(k) / k
    w = np.zeros((NUM_HIDDEN, num_features))
    w[:, :k] = radius * np.stack([np.cos(angles), np.sin(angles)])
    b = np.full(num_features, -1.0)  # dead features: any negative bias contributes nothing
    b[:k] = bias
    return {"W": w, "b": b}


@functools.cache
def kgon_radius_and_bias(k: int, num_features: int = 6) -> tuple[float, float]:
    r"""Radius l and common bias :math:`b^*` of the k-gon that minimize the population loss (Chen et al. Sec. 4).

    Minimized over the symmetric family by damped Newton steps in float64 (central differences of the closed
    form :func:`population_loss`, which is C² near the optimum), from l = 1.2, b = −0.3.
    """
    k, num_features = int(k), int(num_features)

    def h(theta):
        return float(population_loss(_kgon_numpy(k, num_features, *theta), xp=np))

    theta, step = np.array([1.2, -0.3]), 1e-4
    eye = np.eye(2) * step
    for _ in range(100):
        grad = np.array([(h(theta + e) - h(theta - e)) / (2 * step) for e in eye])
        hess = np.array(
            [
                [
                    (h(theta + e + f) - h(theta + e - f) - h(theta - e + f) + h(theta - e - f)) / (4 * step**2)
                    for f in eye
                ]
                for e in eye
            ]
        )
        evals, evecs = np.linalg.eigh(hess)
        direction = -evecs @ ((evecs.T @ grad) / np.maximum(evals, 1e-3))  # Newton, or gradient where not convex
        t, value = 1.0, h(theta)
        while h(theta + t * direction) > value and t > 1e-8:
            t *= 0.5
        theta = theta + t * direction
        if np.max(np.abs(grad)) < 1e-10 or np.max(np.abs(t * direction)) < 1e-13:
            break
    return float(theta[0]), float(theta[1])


def kgon_llc(k: int, positive_biases: int = 0) -> tuple[Fraction, int]:
    r"""λ and m at the k-gon (k ≥ 5) with σ = ``positive_biases`` positive dead biases: ((3(k+σ) − 1)/2, 1).

    See the module docstring for the derivation (flat directions: the rotation and 3 per negative dead
    feature). Independent of c.
    """
    return Fraction(3 * (k + positive_biases) - 1, 2), 1


@functools.partial(jax.jit, static_argnames=("num_steps",))
def _refine(params, x, num_steps):
    """Newton steps to the critical point of :math:`L_n` near ``params``, in the non-flat subspace.

    Each step solves with the pseudo-inverse of the exact Hessian (eigenvalues below 1e-6 of the largest in
    absolute value count as flat: the rotation and the dead features' directions, where the gradient is 0).
    :math:`L_n` is piecewise quadratic in the outputs, so from the symmetric k-gon (an O(n^{-1/2}) perturbation
    away) a few steps reach the critical point to float32 precision.
    """
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    def loss(v):
        return tms_loss(unravel(v), x)

    def step(v, _):
        grad, hess = jax.grad(loss)(v), jax.hessian(loss)(v)
        evals, evecs = jnp.linalg.eigh(hess)
        keep = jnp.abs(evals) > 1e-6 * jnp.max(jnp.abs(evals))
        inverse = jnp.where(keep, 1.0 / jnp.where(keep, evals, 1.0), 0.0)
        candidate = v - evecs @ (inverse * (evecs.T @ grad))
        return jnp.where(loss(candidate) <= loss(v), candidate, v), None

    return unravel(jax.lax.scan(step, flat, None, length=num_steps)[0])


# ------------------------------------------------------------------------------------------ builder
def _parse_point(point) -> int:
    if isinstance(point, str):
        name = point.strip().lower()
        if name.endswith("-gon") and name[:-4].isdigit():
            return int(name[:-4])
        raise ValueError(f"`point` must be 'k-gon' (e.g. '5-gon', '6-gon') or an integer k; got {point!r}.")
    if isinstance(point, (int, np.integer)) and not isinstance(point, bool):
        return int(point)
    raise ValueError(f"`point` must be 'k-gon' (e.g. '5-gon', '6-gon') or an integer k; got {point!r}.")


def tms(
    *,
    num_data: int = 5000,
    seed: int = 0,
    point="6-gon",
    num_features: int = 6,
    positive_biases: int = 0,
    dead_bias: float = DEFAULT_DEAD_BIAS,
    refine_steps: int = 10,
) -> ReferenceProblem:
    r"""The toy model of superposition (2 hidden dims, c features) at a k-gon critical point, with synthetic data.

    Args:
        num_data: n.
        seed: seeds the data (numpy ``default_rng``); the data do not depend on ``point``, so two problems
            with the same ``seed`` and ``num_data`` share their data set (as model comparison needs).
        point: ``"5-gon"``, ``"6-gon"`` or an integer k with 5 ≤ k ≤ min(8, c).
        num_features: c (default 6, as in Chen et al.).
        positive_biases: σ, how many of the c − k dead features get the positive bias 1/(2c) instead of a
            negative one (Chen et al.'s 5-gon with one positive bias has λ = 8.5).
        dead_bias: the negative bias of the other dead features (default −4). Any negative value gives the same λ, but
            it sets where the flat plateau around the dead feature ends: once :math:`\lVert W_i\rVert^2 + b_i > 0` the
            feature's own output switches on and the loss falls towards a configuration that represents it (for the
            5-gon, towards the 6-gon); likewise past :math:`b_i = 0`. Only the localization holds these exactly flat
            directions, so a small :math:`|b_i|` lets the chains leave the k-gon. Measured at n = 5000, γ = 1, SGLD
            ε = 3e-4: with :math:`b_6 = b^* = -0.28`, 6 of 8 chains left the 5-gon within 12 000 steps (ending at
            :math:`\lVert W_6\rVert \approx 1.3`, the 6-gon radius, and λ̂ < 0); with −4 none did.
        refine_steps: Newton iterations (full batch) from the symmetric k-gon to the critical point of this
            data set's :math:`L_n`; 0 keeps the symmetric population k-gon.

    Returns:
        :class:`ReferenceProblem` with ``loss_fn = tms_loss``, ``params = {"W": (2, c), "b": (c,)}``,
        ``data`` = x of shape (n, c), and ``true_llc, multiplicity = kgon_llc(k, positive_biases)``.

    Example:
        >>> import jax, numpy as np, slt
        >>> p = slt.models.tms(num_data=200, point="5-gon")
        >>> p.params["W"].shape, p.params["b"].shape, p.data.shape, p.true_llc
        ((2, 6), (6,), (200, 6), Fraction(7, 1))
        >>> grad = jax.grad(p.loss_fn)(p.params, p.data)  # refined to a critical point of this L_n
        >>> bool(max(np.abs(g).max() for g in jax.tree_util.tree_leaves(grad)) < 1e-5)
        True
    """
    k = _parse_point(point)
    validate.int_at_least(num_features, "num_features", 5)
    if not MIN_K <= k <= min(MAX_K, num_features):
        raise ValueError(
            f"`point`: k must satisfy {MIN_K} <= k <= min({MAX_K}, num_features = {num_features}); got k = {k}. "
            "(For k <= 4 the optimal bias is 0 and a ReLU kink sits at w*; k > 8 is not checked.)"
        )
    validate.int_at_least(num_data, "num_data", 2)
    if not (isinstance(positive_biases, (int, np.integer)) and 0 <= positive_biases <= num_features - k):
        raise ValueError(
            f"`positive_biases` must be an integer in [0, c - k] = [0, {num_features - k}]; got {positive_biases!r}."
        )
    if not dead_bias < 0:
        raise ValueError(f"`dead_bias` must be negative (a dead feature's ReLU stays off); got {dead_bias!r}.")
    validate.non_negative_int(refine_steps, "refine_steps")

    x = tms_data(num_features, num_data, seed)

    radius, bias = kgon_radius_and_bias(k, num_features)
    negative = float(dead_bias)
    num_dead = num_features - k
    dead = [1.0 / (2 * num_features)] * positive_biases + [negative] * (num_dead - positive_biases)
    params = kgon_params(k, radius, bias, num_features=num_features, dead_biases=dead)
    if refine_steps:
        params = _refine(params, x, int(refine_steps))
    lam, mult = kgon_llc(k, positive_biases)
    return ReferenceProblem(tms_loss, params, x, lam, mult)
