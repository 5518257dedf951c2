r"""In-context linear regression: the task, a small transformer for it, and the Bayes-optimal baselines.

Task (Garg et al. 2022; Raventós, Paul, Chen, Ganguli, arXiv 2306.15063; Hoogland et al., arXiv 2402.02364):
each sequence holds K pairs :math:`(x_k, y_k)` with

.. math:: x_k \sim \mathcal N(0, I_D), \qquad y_k = t^\top x_k + \sigma \xi_k, \quad \xi_k \sim \mathcal N(0, 1),

and its own task vector t: drawn fresh, :math:`t \sim \mathcal N(0, I_D)` ("infinite task diversity"), or
uniformly from a fixed pool of M vectors drawn once from the same Gaussian (``num_tasks=M``; Raventós et al.
study how the learned predictor moves from the pool's posterior mean to ridge regression as M grows). The model
predicts each :math:`y_k` from :math:`(x_1, y_1, \dots, x_{k-1}, y_{k-1}, x_k)`; the loss is the mean squared
error over the K predictions (``slt.losses.mse``).

Encoding (:func:`encode`): the sequence is the 2K tokens :math:`x_1, y_1, \dots, x_K, y_K`, each a vector of
:math:`\mathbb R^{D+1}`: an x token is :math:`(0, x_k)`, a y token is :math:`(y_k, 0, \dots, 0)`. This is the
encoding of Raventós et al. that Hoogland et al. reuse, as we read them (their code was not available to us;
check the papers before a quantitative comparison). :class:`ICLTransformer` embeds the tokens linearly into
``d_model``, adds learned position embeddings, applies the causal pre-norm blocks of :class:`slt.models.GPT`
(:class:`slt.models.Block`; same fused q/k/v layout, so :func:`slt.models.head_slices` applies) and a final
LayerNorm, and reads a scalar out of the x tokens' positions: the output at position 2k − 2 (the token
:math:`x_k`) is the prediction of :math:`y_k`, which the causal mask keeps out of its view.

Baselines, each a prediction of every :math:`y_k` from the k − 1 pairs before it (arrays ``(N, K)``):

* :func:`ridge_predictions`: the posterior mean of t under its Gaussian prior,
  :math:`\hat t = (X^\top X + \tfrac{\sigma^2}{\tau^2} I)^{-1} X^\top y`: the Bayes-optimal predictor for
  infinite task diversity (τ = ``prior_std`` = 1).
* :func:`ols_predictions`: minimum-norm least squares :math:`X^+ y`; its expected loss has a closed form
  (:func:`ols_expected_loss`, with the spike at k − 1 ≈ D).
* :func:`dmmse_predictions`: the posterior mean over a finite pool (Raventós et al.'s dMMSE), Bayes-optimal
  when the tasks come from that pool.
* the zero predictor, loss :math:`\mathbb E[y^2] = \tau^2 D + \sigma^2` (:func:`zero_predictor_loss`); the
  first prediction of every sequence (no pairs seen) cannot do better.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from slt._src import validate
from slt.losses import mse
from slt.models.gpt import _INIT_STD, _LN_EPS, _apply, _apply_jit, _blocks, _check_attention_sizes, _dropout

__all__ = [
    "ICLConfig",
    "ICLSample",
    "ICLTask",
    "ICLTransformer",
    "dmmse_predictions",
    "encode",
    "ols_expected_loss",
    "ols_predictions",
    "per_position_loss",
    "ridge_predictions",
    "zero_predictor_loss",
]


# -------------------------------------------------------------------------------------------------- task
class ICLSample(NamedTuple):
    """Pairs of an :class:`ICLTask`: ``xs (N, K, D)``, ``ys (N, K)``, and each sequence's task ``tasks (N, D)``."""

    xs: jax.Array
    ys: jax.Array
    tasks: jax.Array

    def data(self) -> tuple[jax.Array, jax.Array]:
        """``(encode(xs, ys), ys)``: inputs and targets for :func:`slt.models.train` and :func:`slt.estimate_llc`."""
        return encode(self.xs, self.ys), self.ys


@dataclasses.dataclass(frozen=True)
class ICLTask:
    """The in-context linear regression task of the module docstring.

    Attributes:
        dim: D, the input dimension.
        num_pairs: K, pairs per sequence.
        noise_std: σ (default √0.125, the noise variance 0.125 of Raventós et al.).
        num_tasks: M, the size of a fixed task pool; ``None`` (default) draws a fresh task per sequence.
        task_seed: seed of the pool.

    Example:
        >>> import jax, slt
        >>> task = slt.models.ICLTask(dim=3, num_pairs=5, num_tasks=8)
        >>> s = task.sample(jax.random.key(0), 10)
        >>> s.xs.shape, s.ys.shape, s.tasks.shape, task.task_pool().shape
        ((10, 5, 3), (10, 5), (10, 3), (8, 3))
        >>> tokens, ys = s.data()
        >>> tokens.shape  # x1, y1, ..., x5, y5, each (0, x) or (y, 0, 0, 0)
        (10, 10, 4)
    """

    dim: int = 4
    num_pairs: int = 16
    noise_std: float = math.sqrt(0.125)
    num_tasks: int | None = None
    task_seed: int = 0

    def __post_init__(self):
        validate.positive_int(self.dim, "dim")
        validate.positive_int(self.num_pairs, "num_pairs")
        validate.positive_float(self.noise_std, "noise_std")
        if self.num_tasks is not None:
            validate.positive_int(self.num_tasks, "num_tasks")

    def task_pool(self) -> np.ndarray | None:
        """The M task vectors ``(M, D)`` (float32, drawn from ``task_seed``), or ``None`` for fresh tasks."""
        if self.num_tasks is None:
            return None
        rng = np.random.default_rng(self.task_seed)
        return rng.standard_normal((self.num_tasks, self.dim)).astype(np.float32)

    def sample(self, key, num_sequences: int) -> ICLSample:
        """``num_sequences`` sequences of K pairs (deterministic given ``key``)."""
        key = validate.as_key(key)
        num_sequences = validate.positive_int(num_sequences, "num_sequences")
        pool = self.task_pool()
        return _sample(
            key,
            None if pool is None else jnp.asarray(pool),
            jnp.float32(self.noise_std),
            num_sequences=num_sequences,
            num_pairs=self.num_pairs,
            dim=self.dim,
        )


@functools.partial(jax.jit, static_argnames=("num_sequences", "num_pairs", "dim"))
def _sample(key, pool, noise_std, *, num_sequences, num_pairs, dim):
    k_task, k_x, k_noise = jax.random.split(key, 3)
    if pool is None:
        tasks = jax.random.normal(k_task, (num_sequences, dim))
    else:
        tasks = pool[jax.random.randint(k_task, (num_sequences,), 0, pool.shape[0])]
    xs = jax.random.normal(k_x, (num_sequences, num_pairs, dim))
    noise = jax.random.normal(k_noise, (num_sequences, num_pairs))
    ys = jnp.einsum("nkd,nd->nk", xs, tasks) + noise_std * noise
    return ICLSample(xs, ys, tasks)


def encode(xs: jax.Array, ys: jax.Array) -> jax.Array:
    """Interleave pairs into tokens ``(N, 2K, D+1)``: x token ``(0, x_k)`` at 2k, y token ``(y_k, 0, ..., 0)`` at 2k+1.

    Example:
        >>> import jax.numpy as jnp, slt
        >>> slt.models.icl.encode(jnp.array([[[1.0, 2.0]]]), jnp.array([[3.0]])).tolist()
        [[[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]]]
    """
    xs, ys = jnp.asarray(xs), jnp.asarray(ys)
    if xs.ndim != 3 or ys.shape != xs.shape[:2]:
        raise ValueError(f"`xs` must be (N, K, D) and `ys` (N, K); got {xs.shape} and {ys.shape}.")
    n, k, d = xs.shape
    x_tok = jnp.concatenate([jnp.zeros((n, k, 1), xs.dtype), xs], axis=-1)
    y_tok = jnp.concatenate([ys[..., None], jnp.zeros((n, k, d), ys.dtype)], axis=-1)
    return jnp.stack([x_tok, y_tok], axis=2).reshape(n, 2 * k, d + 1)


# ------------------------------------------------------------------------------------------------- model
@dataclasses.dataclass(frozen=True)
class ICLConfig:
    """Sizes of an :class:`ICLTransformer` (defaults: Hoogland et al.'s D = 4, K = 16, 2 layers, 4 heads,
    width 64, as we read them).

    Attributes:
        dim: D; tokens have D + 1 entries.
        num_pairs: K; the context holds 2K tokens.
        num_layers, num_heads, d_model, d_mlp, dropout: as in :class:`slt.models.GPTConfig`.

    Example:
        >>> import slt
        >>> slt.models.ICLConfig(dim=2, num_pairs=4, d_model=16).context_length
        8
    """

    dim: int = 4
    num_pairs: int = 16
    num_layers: int = 2
    num_heads: int = 4
    d_model: int = 64
    d_mlp: int | None = None
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("dim", "num_pairs", "num_layers", "num_heads", "d_model"):
            validate.positive_int(getattr(self, name), name)
        _check_attention_sizes(self)

    @property
    def context_length(self) -> int:
        """2K tokens."""
        return 2 * self.num_pairs

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def mlp_width(self) -> int:
        return 4 * self.d_model if self.d_mlp is None else self.d_mlp


class ICLTransformer(nnx.Module):
    """``model(tokens) -> predictions``: tokens ``(..., 2K', D+1)`` (:func:`encode`, K' ≤ K), predictions
    ``(..., K')`` of each :math:`y_k` read at the token :math:`x_k`.

    Parameters: ``embed`` (``Linear(D+1, d_model)``), ``position_embed.embedding`` ``(2K, d_model)``,
    ``blocks[l]`` (:class:`slt.models.Block`), ``ln_f`` and ``readout`` (``Linear(d_model, 1)``). Built in
    evaluation mode (dropout off), like :class:`slt.models.GPT`; ``ICLTransformer.default_loss`` is
    ``slt.losses.mse``.

    Example:
        >>> import jax, slt
        >>> from flax import nnx
        >>> config = slt.models.ICLConfig(dim=2, num_pairs=4, num_layers=1, num_heads=2, d_model=8)
        >>> model = slt.models.ICLTransformer(config, rngs=nnx.Rngs(0))
        >>> tokens, ys = slt.models.ICLTask(dim=2, num_pairs=4).sample(jax.random.key(0), 3).data()
        >>> model(tokens).shape == ys.shape == (3, 4)
        True
    """

    default_loss = staticmethod(mse)

    def __init__(self, config: ICLConfig, *, rngs):
        if not isinstance(config, ICLConfig):
            raise ValueError(f"`config` must be a slt.models.ICLConfig; got {type(config).__name__}.")
        self.config = config
        init = nnx.initializers.normal(_INIT_STD)
        self.embed = nnx.Linear(config.dim + 1, config.d_model, rngs=rngs)
        self.position_embed = nnx.Embed(config.context_length, config.d_model, embedding_init=init, rngs=rngs)
        self.embed_dropout = _dropout(float(config.dropout), rngs)
        self.blocks = _blocks(config, rngs)
        self.ln_f = nnx.LayerNorm(config.d_model, epsilon=_LN_EPS, rngs=rngs)
        self.readout = nnx.Linear(config.d_model, 1, kernel_init=init, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        *_, t, width = tokens.shape
        if width != self.config.dim + 1:
            raise ValueError(f"`tokens` must have D + 1 = {self.config.dim + 1} entries each; got {width}.")
        if t > self.config.context_length or t % 2:
            raise ValueError(
                f"`tokens` must hold an even number of tokens (x, y pairs), at most {self.config.context_length}; "
                f"got {t}."
            )
        h = _apply(self.embed_dropout, self.embed(tokens) + self.position_embed.embedding[:t])
        for block in self.blocks:
            h = block(h)
        return self.readout(self.ln_f(h))[..., 0::2, 0]


def per_position_loss(model, tokens: jax.Array, ys: jax.Array) -> jax.Array:
    """Squared error of each prediction, ``(N, K)``: ``(model(tokens) - ys)**2``; its mean is the training loss.

    Example:
        >>> import jax, slt
        >>> from flax import nnx
        >>> config = slt.models.ICLConfig(dim=2, num_pairs=4, num_layers=1, num_heads=2, d_model=8)
        >>> model = slt.models.ICLTransformer(config, rngs=nnx.Rngs(0))
        >>> tokens, ys = slt.models.ICLTask(dim=2, num_pairs=4).sample(jax.random.key(0), 3).data()
        >>> slt.models.icl.per_position_loss(model, tokens, ys).shape
        (3, 4)
    """
    return _apply_jit(_squared_errors, model, tokens, ys)


def _squared_errors(model, tokens, ys):
    return jnp.square(model(tokens) - ys)


# --------------------------------------------------------------------------------------------- baselines
def _prefix_moments(xs, ys):
    """A_k = sum_{j<k} x_j x_j^T and b_k = sum_{j<k} x_j y_j (exclusive prefix sums), float64."""
    xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    outer = np.einsum("nki,nkj->nkij", xs, xs)
    a = np.cumsum(outer, axis=1) - outer
    xy = xs * ys[..., None]
    b = np.cumsum(xy, axis=1) - xy
    return xs, a, b


def ridge_predictions(xs, ys, noise_std: float, prior_std: float = 1.0) -> np.ndarray:
    r"""Posterior-mean predictions :math:`\hat y_k = x_k^\top (A_k + \tfrac{\sigma^2}{\tau^2} I)^{-1} b_k`, with
    :math:`A_k = \sum_{j<k} x_j x_j^\top`, :math:`b_k = \sum_{j<k} x_j y_j`: Bayes-optimal for
    :math:`t \sim \mathcal N(0, \tau^2 I)` and noise σ. Returns ``(N, K)`` float64 (the first column is 0).

    Example:
        >>> import jax, numpy as np, slt
        >>> s = slt.models.ICLTask(dim=2, num_pairs=8, noise_std=0.1).sample(jax.random.key(0), 500)
        >>> pred = slt.models.icl.ridge_predictions(s.xs, s.ys, noise_std=0.1)
        >>> err = np.mean((pred - np.asarray(s.ys)) ** 2, axis=0)  # per position: D + σ², then ≈ σ²
        >>> bool(err[0] > 1.5), bool(err[-1] < 0.02)
        (True, True)
    """
    validate.positive_float(noise_std, "noise_std")
    validate.positive_float(prior_std, "prior_std")
    xs, a, b = _prefix_moments(xs, ys)
    reg = (noise_std / prior_std) ** 2 * np.eye(xs.shape[-1])
    t_hat = np.linalg.solve(a + reg, b[..., None])[..., 0]
    return np.einsum("nkd,nkd->nk", xs, t_hat)


def ols_predictions(xs, ys) -> np.ndarray:
    r"""Minimum-norm least-squares predictions :math:`\hat y_k = x_k^\top X_{<k}^+ y_{<k} = x_k^\top A_k^+ b_k`
    (0 for the first pair). Returns ``(N, K)`` float64. Expected loss: :func:`ols_expected_loss`.

    Example:
        >>> import jax, numpy as np, slt
        >>> s = slt.models.ICLTask(dim=2, num_pairs=6, noise_std=1e-3).sample(jax.random.key(0), 4)
        >>> pred = slt.models.icl.ols_predictions(s.xs, s.ys)
        >>> bool(np.allclose(pred[:, 4:], s.ys[:, 4:], atol=1e-2))  # t in 2 dimensions: found from 4 pairs
        True
    """
    xs, a, b = _prefix_moments(xs, ys)
    t_hat = np.einsum("nkij,nkj->nki", np.linalg.pinv(a, hermitian=True), b)
    return np.einsum("nkd,nkd->nk", xs, t_hat)


def dmmse_predictions(xs, ys, tasks, noise_std: float, *, chunk_size: int = 256) -> np.ndarray:
    r"""Posterior mean over a finite task pool :math:`\{t_m\}_{m=1}^M` (uniform prior):
    :math:`\hat y_k = \sum_m w_{mk}\, t_m^\top x_k`, :math:`w_{mk} \propto \exp(-\sum_{j<k}(y_j - t_m^\top x_j)^2
    / 2\sigma^2)` (Raventós et al.'s dMMSE). ``tasks`` is ``(M, D)`` (``ICLTask.task_pool()``). Returns
    ``(N, K)`` float64; computed ``chunk_size`` sequences at a time (memory ``chunk_size × K × M``).

    Example:
        >>> import jax, numpy as np, slt
        >>> task = slt.models.ICLTask(dim=2, num_pairs=8, noise_std=0.1, num_tasks=4)
        >>> s = task.sample(jax.random.key(0), 50)
        >>> pred = slt.models.icl.dmmse_predictions(s.xs, s.ys, task.task_pool(), noise_std=0.1)
        >>> bool(np.allclose(pred[:, -1], np.einsum("nd,nd->n", s.xs[:, -1], s.tasks), atol=1e-3))  # task found
        True
    """
    validate.positive_float(noise_std, "noise_std")
    chunk_size = validate.positive_int(chunk_size, "chunk_size")
    xs, ys, tasks = (np.asarray(v, np.float64) for v in (xs, ys, tasks))
    if tasks.ndim != 2 or tasks.shape[1] != xs.shape[-1]:
        raise ValueError(f"`tasks` must be (M, D) with D = {xs.shape[-1]}; got {tasks.shape}.")
    out = np.empty(ys.shape)
    for start in range(0, xs.shape[0], chunk_size):
        x, y = xs[start : start + chunk_size], ys[start : start + chunk_size]
        fit = np.einsum("nkd,md->nkm", x, tasks)  # t_m^T x_k
        sq = np.square(y[..., None] - fit) / (2.0 * noise_std**2)
        log_w = -(np.cumsum(sq, axis=1) - sq)  # exclusive: pairs before k
        log_w -= log_w.max(axis=-1, keepdims=True)
        w = np.exp(log_w)
        out[start : start + chunk_size] = np.sum(w * fit, axis=-1) / np.sum(w, axis=-1)
    return out


def zero_predictor_loss(dim: int, noise_std: float, prior_std: float = 1.0) -> float:
    r""":math:`\mathbb E[y_k^2] = \tau^2 D + \sigma^2`, the loss of predicting 0 (and of any predictor at k = 1).

    Example:
        >>> import slt
        >>> slt.models.icl.zero_predictor_loss(4, noise_std=0.5)
        4.25
    """
    validate.positive_int(dim, "dim")
    return float(prior_std**2 * dim + noise_std**2)


def ols_expected_loss(dim: int, num_previous: int, noise_std: float, prior_std: float = 1.0) -> float:
    r"""Expected squared error of :func:`ols_predictions` on :math:`y_k` given n = ``num_previous`` = k − 1 pairs.

    With :math:`X` the n × D Gaussian design, :math:`X^+X` projects onto its row space and
    :math:`\mathbb E[(X^\top X)^{-1}] = I/(n - D - 1)`, :math:`\mathbb E[(X X^\top)^{-1}] = I/(D - n - 1)`
    (inverse Wishart means), so

    .. math::

        \mathbb E[(y_k - \hat y_k)^2] = \begin{cases}
          \tau^2 D + \sigma^2 & n = 0,\\
          \sigma^2 + \tau^2 (D - n) + \sigma^2 \frac{n}{D - n - 1} & 1 \le n \le D - 2,\\
          \infty & D - 1 \le n \le D + 1,\\
          \sigma^2 \big(1 + \frac{D}{n - D - 1}\big) & n \ge D + 2.
        \end{cases}

    Example:
        >>> import slt
        >>> slt.models.icl.ols_expected_loss(4, 10, noise_std=0.5)  # 0.25 * (1 + 4 / 5)
        0.45
    """
    d = validate.positive_int(dim, "dim")
    n = validate.non_negative_int(num_previous, "num_previous")
    s2, t2 = noise_std**2, prior_std**2
    if n == 0:
        return float(t2 * d + s2)
    if n <= d - 2:
        return float(s2 + t2 * (d - n) + s2 * n / (d - n - 1))
    if n <= d + 1:
        return math.inf
    return float(s2 * (1.0 + d / (n - d - 1)))
