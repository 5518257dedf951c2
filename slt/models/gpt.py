r"""A small GPT-style decoder in Flax NNX, its per-token loss, and an optax trainer.

The model (:class:`GPT`) is the GPT-2 architecture at toy scale (Radford et al. 2019): token and learned
position embeddings, ``num_layers`` pre-norm blocks

.. math:: h \leftarrow h + \mathrm{Attn}(\mathrm{LN}_1(h)), \qquad h \leftarrow h + \mathrm{MLP}(\mathrm{LN}_2(h)),

a final LayerNorm and an unembedding to ``vocab_size`` logits. Attention is causal multi-head self-attention
whose queries, keys and values come from **one fused projection** ``attn.qkv`` (kernel ``(d_model, 3 d_model)``,
bias ``(3 d_model,)``), as in GPT-2's ``c_attn``. With :math:`d_h` = ``d_model // num_heads``, the columns of
that kernel (and the entries of its bias) are laid out

.. code-block:: text

    [ q: head 0 | head 1 | ... | head H-1 ][ k: head 0 | ... | head H-1 ][ v: head 0 | ... | head H-1 ]

so that head h owns the columns

* q: ``h*d_h : (h+1)*d_h``
* k: ``d_model + h*d_h : d_model + (h+1)*d_h``
* v: ``2*d_model + h*d_h : 2*d_model + (h+1)*d_h``

of ``blocks[l].attn.qkv.kernel`` (and the same entries of its bias), and the rows ``h*d_h : (h+1)*d_h`` of the
output projection ``blocks[l].attn.out.kernel`` (``(d_model, d_model)``; its bias is shared by all heads).
:func:`head_slices` returns these index expressions keyed by parameter path, so that a weight restriction to
one head is a mask over part of the fused arrays. The layout is that of Hugging Face's GPT-2 ``c_attn`` /
``c_proj`` (``Conv1D`` weights are stored ``(in, out)``, like these kernels); the MLP uses the tanh-approximate
GELU of GPT-2 and the LayerNorms ε = 1e-5.

**Evaluation mode.** A model is built in evaluation mode: dropout (``dropout > 0`` in the config) is off, so
the forward pass is a deterministic function of the parameters, which is what :func:`slt.estimate_llc` and
the other samplers need (a stochastic forward pass inside a sampler adds noise to the potential; the PyTorch
peer samples in training mode, which moved its LLC of a 106k-parameter GPT-2 by 23%). :func:`train` switches
dropout on for the optimisation only and back off at the end; ``model.train()`` / ``model.eval()`` (NNX)
switch by hand.

Loss. :func:`per_token_loss` gives the next-token cross-entropy of every position, ``(batch, T-1)``;
:func:`token_cross_entropy` is the batch loss ``loss(logits, targets)`` for the model forms of
:func:`slt.estimate_llc`, on the pair ``lm_data(tokens) = (tokens[:, :-1], tokens[:, 1:])``::

    slt.estimate_llc(model, slt.models.lm_data(tokens), loss=slt.models.token_cross_entropy, key=..., ...)

It is the mean over sequences of the per-sequence *mean* token cross-entropy (nats per token), as the
Hugging Face / PyTorch-peer loss; ``slt.losses.cross_entropy`` instead sums the tokens of a sequence (the
exact NLL of a sequence), which multiplies the effective nβ by the sequence length.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from slt._src import validate
from slt.targets import check_data

__all__ = [
    "GPT",
    "Block",
    "CausalSelfAttention",
    "GPTConfig",
    "head_slices",
    "lm_data",
    "per_token_loss",
    "token_cross_entropy",
    "train",
]

_INIT_STD = 0.02  # GPT-2's initialisation scale
_LN_EPS = 1e-5


# ------------------------------------------------------------------------------------------------ config
@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """Sizes of a :class:`GPT`.

    Attributes:
        vocab_size: number of token ids.
        context_length: the longest input sequence (number of learned positions).
        num_layers: transformer blocks.
        num_heads: attention heads per block; must divide ``d_model``.
        d_model: width of the residual stream.
        d_mlp: hidden width of each MLP; ``None`` gives ``4 * d_model``; ``0`` gives an attention-only model.
        dropout: dropout rate on attention probabilities, residual branches and embeddings, active only in
            training mode (see the module docstring); default 0.
        tie_embeddings: unembed with the transpose of the token embedding (GPT-2's tying); default untied.

    Example:
        >>> import slt
        >>> c = slt.models.GPTConfig(vocab_size=16, context_length=8, num_layers=1, num_heads=2, d_model=8)
        >>> c.head_dim, c.mlp_width
        (4, 32)
    """

    vocab_size: int
    context_length: int
    num_layers: int = 2
    num_heads: int = 4
    d_model: int = 64
    d_mlp: int | None = None
    dropout: float = 0.0
    tie_embeddings: bool = False

    def __post_init__(self):
        for name in ("vocab_size", "context_length", "num_layers", "num_heads", "d_model"):
            validate.positive_int(getattr(self, name), name)
        _check_attention_sizes(self)

    @property
    def head_dim(self) -> int:
        """:math:`d_h` = ``d_model // num_heads``."""
        return self.d_model // self.num_heads

    @property
    def mlp_width(self) -> int:
        """The MLP's hidden width (0: no MLP)."""
        return 4 * self.d_model if self.d_mlp is None else self.d_mlp


def _check_attention_sizes(config) -> None:
    if config.d_model % config.num_heads:
        raise ValueError(
            f"`num_heads` ({config.num_heads}) must divide `d_model` ({config.d_model}): each head gets "
            "d_model // num_heads columns of the fused q/k/v projection."
        )
    if config.d_mlp is not None:
        validate.non_negative_int(config.d_mlp, "d_mlp")
    dropout = float(config.dropout)
    if not (0.0 <= dropout < 1.0):
        raise ValueError(f"`dropout` must be in [0, 1); got {config.dropout!r}.")


# ------------------------------------------------------------------------------------------------ losses
def lm_data(tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(inputs, targets) = (tokens[:, :-1], tokens[:, 1:])``: next-token prediction as supervised data.

    Example:
        >>> import jax.numpy as jnp, slt
        >>> x, y = slt.models.lm_data(jnp.arange(8).reshape(2, 4))
        >>> x.tolist(), y.tolist()
        ([[0, 1, 2], [4, 5, 6]], [[1, 2, 3], [5, 6, 7]])
    """
    if np.ndim(tokens) != 2 or np.shape(tokens)[1] < 2:
        raise ValueError(f"`tokens` must have shape (num_sequences, T) with T >= 2; got {np.shape(tokens)}.")
    if not jnp.issubdtype(jnp.asarray(tokens).dtype, jnp.integer):
        raise ValueError(f"`tokens` must be integer token ids; got dtype {jnp.asarray(tokens).dtype}.")
    return tokens[:, :-1], tokens[:, 1:]


def _token_nll(logits: jax.Array, targets: jax.Array) -> jax.Array:
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(log_probs, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]


def token_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    r"""Next-token cross-entropy in nats per token: the mean over sequences of each sequence's mean over tokens,

    .. math:: L = \frac{1}{B}\sum_b \frac{1}{T}\sum_t -\log \mathrm{softmax}(z_{bt})_{y_{bt}},

    for logits ``(B, T, V)`` and integer targets ``(B, T)``: ``loss(outputs, targets)`` for
    ``slt.estimate_llc(model, lm_data(tokens), loss=token_cross_entropy, ...)`` (one example = one sequence).

    Example:
        >>> import jax.numpy as jnp, slt
        >>> logits = jnp.zeros((2, 3, 4))  # uniform over 4 tokens: log 4 nats per token
        >>> round(float(slt.models.token_cross_entropy(logits, jnp.zeros((2, 3), jnp.int32))), 4)
        1.3863
    """
    return jnp.mean(_token_nll(logits, targets))


token_cross_entropy.targets_shape = "labels"


def per_token_loss(model, tokens: jax.Array) -> jax.Array:
    """Next-token cross-entropy of every position: ``(B, T-1)`` for tokens ``(B, T)``; entry t is
    :math:`-\\log p(x_{t+1} \\mid x_{\\le t})`. Its mean is ``token_cross_entropy`` on :func:`lm_data`.

    Example:
        >>> import jax, jax.numpy as jnp, slt
        >>> from flax import nnx
        >>> config = slt.models.GPTConfig(vocab_size=16, context_length=8, num_layers=1, num_heads=2, d_model=8)
        >>> model = slt.models.GPT(config, rngs=nnx.Rngs(0))
        >>> tokens = jax.random.randint(jax.random.key(0), (3, 9), 0, 16)
        >>> losses = slt.models.per_token_loss(model, tokens)
        >>> inputs, targets = slt.models.lm_data(tokens)
        >>> mean = slt.models.token_cross_entropy(model(inputs), targets)
        >>> losses.shape, bool(jnp.allclose(losses.mean(), mean))
        ((3, 8), True)
    """
    inputs, targets = lm_data(tokens)
    return _apply_jit(_token_nll_of, model, inputs, targets)


def _token_nll_of(model, inputs, targets):
    return _token_nll(model(inputs), targets)


def _apply_impl(fn, graphdef, state, *args):
    return fn(nnx.merge(graphdef, state), *args)


_apply_impl_jit = jax.jit(_apply_impl, static_argnums=(0, 1))


def _apply_jit(fn, model, *args):
    """``fn(model, *args)`` compiled once per model structure and shapes (an NNX model called outside ``jit``
    runs op by op). Stateful layers are not updated: for evaluation-mode models, whose call is pure."""
    graphdef, state = nnx.split(model)
    return _apply_impl_jit(fn, graphdef, state, *args)


# ---------------------------------------------------------------------------------------------- modules
def _dense(d_in, d_out, *, rngs, std=_INIT_STD, use_bias=True):
    return nnx.Linear(d_in, d_out, use_bias=use_bias, kernel_init=nnx.initializers.normal(std), rngs=rngs)


def _dropout(rate, rngs):
    # Built in evaluation mode (deterministic=True); `model.train()` switches it on.
    return nnx.Dropout(rate, deterministic=True, rngs=rngs) if rate > 0 else None


def _apply(dropout, x):
    return x if dropout is None else dropout(x)


class CausalSelfAttention(nnx.Module):
    r"""Causal multi-head self-attention with one fused q/k/v projection ``qkv`` and an output projection ``out``.

    For input :math:`x` (``(..., T, d_model)``) and head h,

    .. math:: o_h = \mathrm{softmax}\Big(\frac{q_h k_h^\top}{\sqrt{d_h}} + M\Big) v_h, \qquad
              \mathrm{Attn}(x) = \sum_h o_h W^{out}_{h} + b^{out},

    with :math:`[q | k | v] = x W^{qkv} + b^{qkv}` split as in the module docstring, :math:`M` the causal mask
    (:math:`-\infty` above the diagonal) and :math:`W^{out}_h` the rows of head h of ``out.kernel``.

    Example:
        >>> import jax.numpy as jnp, slt
        >>> from flax import nnx
        >>> attn = slt.models.CausalSelfAttention(8, 2, rngs=nnx.Rngs(0))
        >>> attn.qkv.kernel.shape, attn.heads(jnp.ones((3, 5, 8))).shape  # per-head outputs o_h
        ((8, 24), (3, 5, 2, 4))
    """

    def __init__(self, d_model: int, num_heads: int, *, dropout: float = 0.0, out_std: float = _INIT_STD, rngs):
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.qkv = _dense(d_model, 3 * d_model, rngs=rngs)
        self.out = _dense(d_model, d_model, rngs=rngs, std=out_std)
        self.attn_dropout = _dropout(dropout, rngs)
        self.resid_dropout = _dropout(dropout, rngs)

    def heads(self, x: jax.Array) -> jax.Array:
        """The per-head outputs :math:`o_h`, shape ``(..., T, num_heads, head_dim)``, before ``out``."""
        *lead, t, d = x.shape
        qkv = self.qkv(x).reshape(*lead, t, 3, self.num_heads, self.head_dim)
        q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
        scores = jnp.einsum("...thd,...shd->...hts", q, k) / math.sqrt(self.head_dim)
        causal = jnp.tril(jnp.ones((t, t), dtype=bool))
        scores = jnp.where(causal, scores, -jnp.inf)
        probs = _apply(self.attn_dropout, jax.nn.softmax(scores, axis=-1))
        return jnp.einsum("...hts,...shd->...thd", probs, v)

    def __call__(self, x: jax.Array) -> jax.Array:
        o = self.heads(x)
        return _apply(self.resid_dropout, self.out(o.reshape(*o.shape[:-2], -1)))


class MLP(nnx.Module):
    """``proj(gelu(fc(x)))`` with GPT-2's tanh-approximate GELU."""

    def __init__(self, d_model: int, d_mlp: int, *, dropout: float = 0.0, out_std: float = _INIT_STD, rngs):
        self.fc = _dense(d_model, d_mlp, rngs=rngs)
        self.proj = _dense(d_mlp, d_model, rngs=rngs, std=out_std)
        self.dropout = _dropout(dropout, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return _apply(self.dropout, self.proj(jax.nn.gelu(self.fc(x), approximate=True)))


class Block(nnx.Module):
    r"""One pre-norm transformer block: :math:`h + \mathrm{Attn}(\mathrm{LN}_1 h)`, then
    :math:`h + \mathrm{MLP}(\mathrm{LN}_2 h)` (no MLP when ``d_mlp == 0``).

    Attributes ``ln1``, ``attn`` (:class:`CausalSelfAttention`), ``ln2`` and ``mlp`` (``fc``, ``proj``; ``None``
    when ``d_mlp == 0``). Residual projections are initialised with std ``0.02 / sqrt(2 num_layers)`` (GPT-2).

    Example:
        >>> import jax.numpy as jnp, slt
        >>> from flax import nnx
        >>> block = slt.models.Block(8, 2, 32, num_layers=1, rngs=nnx.Rngs(0))
        >>> block(jnp.ones((3, 5, 8))).shape
        (3, 5, 8)
    """

    def __init__(self, d_model: int, num_heads: int, d_mlp: int, *, num_layers: int, dropout: float = 0.0, rngs):
        out_std = _INIT_STD / math.sqrt(2 * num_layers)
        self.ln1 = nnx.LayerNorm(d_model, epsilon=_LN_EPS, rngs=rngs)
        self.attn = CausalSelfAttention(d_model, num_heads, dropout=dropout, out_std=out_std, rngs=rngs)
        if d_mlp > 0:
            self.ln2 = nnx.LayerNorm(d_model, epsilon=_LN_EPS, rngs=rngs)
            self.mlp = MLP(d_model, d_mlp, dropout=dropout, out_std=out_std, rngs=rngs)
        else:
            self.ln2 = self.mlp = None

    def __call__(self, h: jax.Array) -> jax.Array:
        h = h + self.attn(self.ln1(h))
        if self.mlp is not None:
            h = h + self.mlp(self.ln2(h))
        return h


def _blocks(config, rngs):
    return nnx.List(
        [
            Block(
                config.d_model,
                config.num_heads,
                config.mlp_width,
                num_layers=config.num_layers,
                dropout=float(config.dropout),
                rngs=rngs,
            )
            for _ in range(config.num_layers)
        ]
    )


class GPT(nnx.Module):
    r"""A GPT-2-style decoder: ``model(tokens) -> logits``, tokens ``(..., T)`` int with T ≤ ``context_length``,
    logits ``(..., T, vocab_size)``; position t's logits predict token t+1 from tokens 0..t.

    Parameters (NNX paths): ``token_embed.embedding`` ``(vocab, d_model)``, ``position_embed.embedding``
    ``(context_length, d_model)``, ``blocks[l]`` (:class:`Block`; the fused ``attn.qkv`` laid out as in the
    module docstring, see :func:`head_slices`), ``ln_f`` and ``unembed.kernel`` ``(d_model, vocab)`` (absent
    with ``tie_embeddings``). Built in **evaluation mode** (dropout off; deterministic), see the module
    docstring. ``GPT.default_loss`` is :func:`token_cross_entropy`, the loss :func:`train` uses by default.

    Args:
        config: a :class:`GPTConfig`.
        rngs: ``nnx.Rngs`` for the initialisation (and the dropout stream, used only in training mode).

    Example:
        >>> import jax.numpy as jnp, slt
        >>> from flax import nnx
        >>> config = slt.models.GPTConfig(vocab_size=16, context_length=8, num_layers=1, num_heads=2, d_model=8)
        >>> model = slt.models.GPT(config, rngs=nnx.Rngs(0))
        >>> model(jnp.zeros((3, 8), jnp.int32)).shape
        (3, 8, 16)
        >>> model.blocks[0].attn.qkv.kernel.shape  # q, k, v of both heads in one array
        (8, 24)
    """

    default_loss = staticmethod(token_cross_entropy)

    def __init__(self, config: GPTConfig, *, rngs):
        if not isinstance(config, GPTConfig):
            raise ValueError(f"`config` must be a slt.models.GPTConfig; got {type(config).__name__}.")
        self.config = config
        init = nnx.initializers.normal(_INIT_STD)
        self.token_embed = nnx.Embed(config.vocab_size, config.d_model, embedding_init=init, rngs=rngs)
        self.position_embed = nnx.Embed(config.context_length, config.d_model, embedding_init=init, rngs=rngs)
        self.embed_dropout = _dropout(float(config.dropout), rngs)
        self.blocks = _blocks(config, rngs)
        self.ln_f = nnx.LayerNorm(config.d_model, epsilon=_LN_EPS, rngs=rngs)
        self.unembed = (
            None if config.tie_embeddings else _dense(config.d_model, config.vocab_size, rngs=rngs, use_bias=False)
        )

    def __call__(self, tokens: jax.Array) -> jax.Array:
        t = tokens.shape[-1]
        if t > self.config.context_length:
            raise ValueError(
                f"`tokens` has {t} positions but the model's context_length is {self.config.context_length}."
            )
        h = self.token_embed(tokens) + self.position_embed.embedding[:t]
        h = _apply(self.embed_dropout, h)
        for block in self.blocks:
            h = block(h)
        h = self.ln_f(h)
        return self.token_embed.attend(h) if self.unembed is None else self.unembed(h)


# ------------------------------------------------------------------------------------------- head slices
def head_slices(config, layer: int, head: int) -> dict[tuple, tuple]:
    """Where head ``head`` of block ``layer`` lives in the fused attention arrays, keyed by parameter path.

    Returns ``{path: index}`` with ``array[index]`` the head's entries of the parameter at ``path`` (paths as
    :func:`slt.targets.path_names` writes them)::

        ("blocks", layer, "attn", "qkv", "kernel"): (slice(None), cols)   # (d_model, 3*d_h) of (d_model, 3*d_model)
        ("blocks", layer, "attn", "qkv", "bias"):   (cols,)                # (3*d_h,) of (3*d_model,)
        ("blocks", layer, "attn", "out", "kernel"): (rows, slice(None))   # (d_h, d_model) of (d_model, d_model)

    with ``cols`` the integer array of head h's q, k and v columns, in that order,
    ``[h*d_h, (h+1)*d_h) ∪ [d_model + h*d_h, ...) ∪ [2*d_model + h*d_h, ...)``, and ``rows = slice(h*d_h,
    (h+1)*d_h)``. The output bias is shared by the heads and belongs to none. Works for any config with
    ``num_layers``, ``num_heads`` and ``d_model`` (:class:`GPTConfig`, :class:`slt.models.ICLConfig`).

    Example:
        >>> import slt
        >>> c = slt.models.GPTConfig(vocab_size=16, context_length=8, num_layers=2, num_heads=2, d_model=8)
        >>> s = slt.models.head_slices(c, layer=1, head=1)
        >>> s[("blocks", 1, "attn", "qkv", "kernel")][1].tolist()  # q, k, v columns of head 1 (d_h = 4)
        [4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23]
        >>> s[("blocks", 1, "attn", "out", "kernel")][0]
        slice(4, 8, None)
    """
    for name in ("num_layers", "num_heads", "d_model"):
        if not hasattr(config, name):
            raise ValueError(f"`config` must have `{name}` (a GPTConfig or ICLConfig); got {type(config).__name__}.")
    layer = validate.non_negative_int(layer, "layer")
    head = validate.non_negative_int(head, "head")
    if layer >= config.num_layers:
        raise ValueError(f"`layer` must be in [0, {config.num_layers}); got {layer}.")
    if head >= config.num_heads:
        raise ValueError(f"`head` must be in [0, {config.num_heads}); got {head}.")
    d, dh = config.d_model, config.d_model // config.num_heads
    own = np.arange(head * dh, (head + 1) * dh)
    cols = np.concatenate([own, d + own, 2 * d + own])
    prefix = ("blocks", layer, "attn")
    return {
        (*prefix, "qkv", "kernel"): (slice(None), cols),
        (*prefix, "qkv", "bias"): (cols,),
        (*prefix, "out", "kernel"): (slice(head * dh, (head + 1) * dh), slice(None)),
    }


# ----------------------------------------------------------------------------------------------- trainer
def _has_dropout(model) -> bool:
    return any(isinstance(m, nnx.Dropout) and m.rate > 0 for _, m in nnx.iter_modules(model))


def _train_step(graphdef, loss, tx, batch_size, params, rest, opt_state, key, step, data):
    n = jax.tree_util.tree_leaves(data)[0].shape[0]
    idx = jax.random.randint(jax.random.fold_in(key, step), (batch_size,), 0, n)
    inputs, targets = jax.tree_util.tree_map(lambda x: x[idx], data)

    def objective(p):
        # Fresh Variables at this trace level: dropout's RNG counter is mutated inside the differentiated call.
        model = nnx.merge(graphdef, p, jax.tree_util.tree_map(lambda x: x, rest))
        value = loss(model(inputs), targets)
        return value, nnx.split(model, nnx.Param, ...)[2]

    (value, rest), grads = jax.value_and_grad(objective, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), rest, opt_state, value


@functools.lru_cache(maxsize=32)
def _adam(learning_rate: float):
    # One transformation object per learning rate: the compiled step is keyed by it, so that training again with
    # the same settings (in chunks, or after a callback) does not compile again.
    return optax.adam(learning_rate)


_train_step_jit = jax.jit(_train_step, static_argnums=(0, 1, 2, 3), donate_argnums=(4, 5, 6))


def train(
    model,
    data,
    *,
    key,
    num_steps: int,
    learning_rate: float | None = None,
    batch_size: int,
    loss: Callable | None = None,
    optimizer: Any = None,
    callback: Callable | None = None,
):
    r"""Train an NNX model with optax on ``data = (inputs, targets)``; the model is updated in place and returned.

    Each step draws ``batch_size`` examples uniformly with replacement (on device, from ``fold_in(key, step)``)
    and applies one optimiser update to the ``nnx.Param`` leaves of ``loss(model(inputs), targets)``. Dropout
    (if the config has any) is on during the steps and off again at the end: the returned model is in
    evaluation mode. The data and loss are those of :func:`slt.estimate_llc`'s model form, so the same pair goes
    to both (and to :class:`slt.callbacks.LLCTracker` through ``callback``).

    Args:
        model: an ``nnx.Module`` (:class:`GPT`, :class:`slt.models.ICLTransformer`, ...).
        data: ``(inputs, targets)`` with a common leading axis n (for a GPT: :func:`lm_data`).
        key: a ``jax.random.key``.
        num_steps: optimiser steps.
        learning_rate: Adam's learning rate (the default optimiser, ``optax.adam``); leave it out when passing
            ``optimizer``.
        batch_size: examples per step.
        loss: ``loss(outputs, targets) -> scalar``; default ``type(model).default_loss``
            (:func:`token_cross_entropy` for :class:`GPT`, mean squared error for the ICL transformer).
        optimizer: an ``optax.GradientTransformation`` instead of Adam.
        callback: ``callback(step, model)`` is called with the model after ``step`` updates, for ``step = 0, 1,
            ..., num_steps`` (an :class:`slt.callbacks.LLCTracker` fits: it estimates when ``step % every == 0``).
            The model passed is in evaluation mode.

    Returns:
        ``(model, history)``: the trained model (the same object) and the minibatch loss of each step,
        a numpy array ``(num_steps,)``.

    Example:
        >>> import jax, jax.numpy as jnp, slt
        >>> from flax import nnx
        >>> config = slt.models.GPTConfig(vocab_size=4, context_length=8, num_layers=1, num_heads=1, d_model=8)
        >>> model = slt.models.GPT(config, rngs=nnx.Rngs(0))
        >>> tokens = jnp.tile(jnp.arange(4), (64, 3))[:, :9]  # 0 1 2 3 0 1 ...: fully predictable
        >>> model, history = slt.models.train(model, slt.models.lm_data(tokens), key=jax.random.key(0),
        ...                                   num_steps=100, learning_rate=1e-2, batch_size=16)
        >>> history.shape, bool(history[-1] < 0.1 * history[0])
        ((100,), True)
    """
    if not isinstance(model, nnx.Module):
        raise ValueError(f"`model` must be an nnx.Module; got {type(model).__name__}.")
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ValueError(
            "`data` must be a pair (inputs, targets) with a common leading axis (for a GPT, "
            f"slt.models.lm_data(tokens)); got {type(data).__name__}."
        )
    data = jax.tree_util.tree_map(jnp.asarray, tuple(data))
    n = check_data(data)
    key = validate.as_key(key)
    num_steps = validate.non_negative_int(num_steps, "num_steps")
    batch_size = validate.positive_int(batch_size, "batch_size")
    if batch_size > n:
        raise ValueError(f"`batch_size` ({batch_size}) is larger than the data ({n} examples).")
    if optimizer is None:
        if learning_rate is None:
            raise ValueError("pass `learning_rate` (for the default optax.adam) or an optax `optimizer`.")
        optimizer = _adam(validate.positive_float(learning_rate, "learning_rate"))
    elif learning_rate is not None:
        raise ValueError("pass either `learning_rate` (for the default optax.adam) or `optimizer`, not both.")
    if loss is None:
        loss = getattr(type(model), "default_loss", None)
        if loss is None:
            raise ValueError(f"`loss` is required: {type(model).__name__} has no `default_loss`.")
    if callback is not None and not callable(callback):
        raise ValueError(f"`callback` must be callable as callback(step, model); got {type(callback).__name__}.")

    dropout = _has_dropout(model)

    def to_model(params, rest):
        nnx.update(model, params, rest)
        if dropout:
            model.eval()
        return model

    if dropout:
        model.train()  # the compiled step is built from this graph: dropout on
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    if dropout:
        model.eval()
    # Copies: the step donates its state buffers, and the model must not hold donated arrays.
    params, rest = jax.tree_util.tree_map(jnp.array, (params, rest))
    opt_state = optimizer.init(params)
    history = []
    try:
        for step in range(num_steps):
            if callback is not None:
                callback(step, to_model(*jax.tree_util.tree_map(jnp.array, (params, rest))))
            params, rest, opt_state, value = _train_step_jit(
                graphdef, loss, optimizer, batch_size, params, rest, opt_state, key, step, data
            )
            history.append(value)
    finally:
        to_model(params, rest)
    if callback is not None:
        callback(num_steps, model)
    return model, np.asarray(jax.device_get(history), dtype=np.float64).reshape(num_steps)
