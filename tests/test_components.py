"""Weight restriction to parts of arrays (single attention heads in fused projections), `slt.components`, and
the data-restricted LLC (`estimate_llc(..., eval_data=...)`).

Ground truth: full-batch SGLD on a loss that is exactly quadratic in the moving entries has the exact stationary
λ̂ of `slt.models.quadratic_llc` (its finite-ε value); the data-restricted λ̂ on linear regression is
nβ/2 · tr(H_S Σ_ε) (see `slt._src.data_restriction`). Tolerances are 4 Monte-Carlo standard errors (ArviZ MCSE of
the λ̂ trace, autocorrelation included): a correct implementation fails such a check with probability ~6e-5.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import slt
from slt.models.regression import quadratic_llc

D_MODEL, NUM_HEADS, SEQ = 4, 2, 3
HEAD_DIM = D_MODEL // NUM_HEADS
Z = 4.0  # tolerance in MCSEs


# ------------------------------------------------------------------------------------- a fused-qkv attention
def attention(attn, x):
    """Causal multi-head self-attention with a fused qkv projection, in the layout of slt.components ("fused"):
    qkv kernel (d, 3d) with columns [q | k | v], each reshaped (num_heads, head_dim); out kernel rows by head."""
    b, t, d = x.shape
    qkv = x @ attn["qkv"]["kernel"] + attn["qkv"]["bias"]
    q, k, v = (a.reshape(b, t, NUM_HEADS, HEAD_DIM) for a in jnp.split(qkv, 3, axis=-1))
    scores = jnp.einsum("bthd,bshd->bhts", q, k) / np.sqrt(HEAD_DIM)
    scores = jnp.where(jnp.tril(jnp.ones((t, t), bool)), scores, -1e9)
    heads = jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(scores, axis=-1), v).reshape(b, t, d)
    return heads @ attn["out"]["kernel"] + attn["out"]["bias"]


def attn_loss(params, batch):
    x, y = batch
    return 0.5 * jnp.mean(jnp.square(attention(params["attn"], x) - y))


def attn_params(seed=0, duplicate=False, dead_out=False):
    rng = np.random.default_rng(seed)
    qkv = rng.standard_normal((D_MODEL, 3 * D_MODEL)) / np.sqrt(D_MODEL)
    qkv_b = 0.1 * rng.standard_normal(3 * D_MODEL)
    out = rng.standard_normal((D_MODEL, D_MODEL)) / np.sqrt(D_MODEL)
    out_b = 0.1 * rng.standard_normal(D_MODEL)
    if duplicate:  # head 1 = head 0 in q, k, v and in the output projection: swapping them is a symmetry
        for p in range(3):
            cols = slice(p * D_MODEL, p * D_MODEL + HEAD_DIM)
            qkv[:, p * D_MODEL + HEAD_DIM : (p + 1) * D_MODEL] = qkv[:, cols]
            qkv_b[p * D_MODEL + HEAD_DIM : (p + 1) * D_MODEL] = qkv_b[cols]
        out[HEAD_DIM:] = out[:HEAD_DIM]
    if dead_out:  # head 1 writes nothing: its rows of the output projection are zero
        out[HEAD_DIM:] = 0.0
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    return {"attn": {"qkv": {"kernel": f32(qkv), "bias": f32(qkv_b)}, "out": {"kernel": f32(out), "bias": f32(out_b)}}}


def attn_data(params, num_data=32, seed=1):
    """Inputs and the model's own outputs at w* (realizable, noise-free): w* is a global minimum, L_n(w*) = 0."""
    x = jax.random.normal(jax.random.key(seed), (num_data, SEQ, D_MODEL))
    return x, jax.jit(attention)(params["attn"], x)


@pytest.fixture(scope="module")
def regression():
    return slt.models.linear_regression(4, num_data=500, seed=3)


@pytest.fixture(scope="module")
def attn():
    params = attn_params()
    return params, attn_data(params)


COMMON = dict(num_chains=4, num_burnin=300, num_draws=1500)


# --------------------------------------------------------------------------------------- (a) masked leaves
def test_masked_entries_match_the_exact_quadratic_value(regression):
    """Only w[0] and w[2] of the single leaf move: the restricted posterior is Gaussian with precision nβ H_SS + γ,
    and full-batch SGLD has the exact stationary λ̂ of quadratic_llc on the eigenvalues of H_SS."""
    p = regression
    x = np.asarray(p.data[0], np.float64)
    hess = x.T @ x / p.num_data
    keep = np.array([True, False, True, False])
    nbeta, gamma, eps = slt.default_nbeta(p.num_data), 1.0, 2e-3
    exact = quadratic_llc(np.linalg.eigvalsh(hess[np.ix_(keep, keep)]), nbeta, gamma, eps)
    full = quadratic_llc(np.linalg.eigvalsh(hess), nbeta, gamma, eps)
    kw = dict(key=jax.random.key(0), step_size=eps, batch_size=p.num_data, localization=gamma, **COMMON)
    res = slt.estimate_llc(p.loss_fn, p.params, p.data, where=lambda path, leaf: keep, **kw)
    assert res.num_params == 2
    mcse = res.llc_mcse
    assert abs(res.llc_mean - exact) < Z * mcse, (res.llc_mean, exact, mcse)
    assert abs(res.llc_mean - full) > 20 * mcse  # the check can tell the restricted value from the full one
    # the same entries as an index expression: the same target, the same numbers
    again = slt.estimate_llc(p.loss_fn, p.params, p.data, where=lambda path, leaf: np.s_[::2], **kw)
    np.testing.assert_array_equal(again.llc_trace, res.llc_trace)


def test_masked_target_keeps_frozen_entries_at_w_star(regression):
    p = regression
    target = slt.targets.from_loss_fn(p.loss_fn, p.params, p.data, where=lambda path, leaf: np.s_[1:3])
    assert target.num_parameters == 2
    moved = target.rebuild(jax.tree_util.tree_map(lambda w: w + 1.0, target.position))
    np.testing.assert_array_equal(np.asarray(moved) - np.asarray(p.params), [0.0, 1.0, 1.0, 0.0])


# ---------------------------------------------------------------------------------- (b) attention heads
def _layout_indices(head):
    """Flat indices of a head's entries in the qkv kernel, written out from the layout convention itself."""
    cols = [p * D_MODEL + head * HEAD_DIM + j for p in range(3) for j in range(HEAD_DIM)]
    return sorted(r * 3 * D_MODEL + c for r in range(D_MODEL) for c in cols)


def test_head_selectors_follow_the_fused_layout(attn):
    params, _ = attn
    parts = slt.components(params, heads={"attn": NUM_HEADS}, depth=1)
    assert list(parts) == ["attn", "attn.head.0", "attn.head.1"]
    kernel = params["attn"]["qkv"]["kernel"]
    for h in range(NUM_HEADS):
        sel = parts[f"attn.head.{h}"]
        np.testing.assert_array_equal(np.flatnonzero(sel(("attn", "qkv", "kernel"), kernel)), _layout_indices(h))
        rows = sel(("attn", "out", "kernel"), params["attn"]["out"]["kernel"])
        np.testing.assert_array_equal(np.flatnonzero(rows.any(axis=1)), np.arange(h * HEAD_DIM, (h + 1) * HEAD_DIM))
        assert sel(("attn", "out", "bias"), params["attn"]["out"]["bias"]) is False  # shared by all heads
        # (c) d counts the selected entries: q, k, v columns with their biases, and the head's output rows
        expected = 3 * HEAD_DIM * (D_MODEL + 1) + HEAD_DIM * D_MODEL
        assert sel.num_selected(params) == expected
        target = slt.targets.from_loss_fn(attn_loss, params, attn[1], where=sel)
        assert target.num_parameters == expected
    # all heads together select every leaf of the projections but the shared output bias
    union = parts["attn.head.0"] | parts["attn.head.1"]
    total = sum(np.size(x) for x in jax.tree_util.tree_leaves(params))
    assert union.num_selected(params) == total - D_MODEL


def test_all_heads_jointly_equal_the_whole_leaves(attn):
    """The union of every head's selector is the projections' leaves minus the shared output bias: the target
    it builds is the one a path predicate on those leaves builds (equal loss object, so the same compiled program,
    and the same position and frozen leaves): with the same key, estimate_llc returns the same numbers."""
    params, data = attn
    parts = slt.components(params, heads={"attn": NUM_HEADS}, depth=1)
    union = parts["attn.head.0"] | parts["attn.head.1"]
    joint = slt.targets.from_loss_fn(attn_loss, params, data, where=union)
    leaves = slt.targets.from_loss_fn(attn_loss, params, data, where=lambda path, leaf: path != ("attn", "out", "bias"))
    assert joint.loss == leaves.loss and hash(joint.loss) == hash(leaves.loss)
    for a, b in zip(
        jax.tree_util.tree_leaves((joint.position, joint.frozen)),
        jax.tree_util.tree_leaves((leaves.position, leaves.frozen)),
    ):
        np.testing.assert_array_equal(a, b)
    assert joint.num_parameters == union.num_selected(params)


# One setting for the head runs below, so that they share a compiled program (heads of one size do).
HEAD_RUN = dict(step_size=1e-3, nbeta=100.0, batch_size=16, num_chains=2, num_burnin=20, num_draws=100)


def test_duplicate_heads_give_the_same_restricted_llc(compiles):
    """Head 1 duplicates head 0, so swapping them is an exact symmetry of the model; the gathered entries of the
    two heads lie in corresponding order, so with the same key the two restricted chains see the same noise and
    follow the same path (up to float32 summation order). A selector that mixed up the q/k/v blocks or the output
    rows of the heads would break the symmetry."""
    params = attn_params(duplicate=True)
    data = attn_data(params)
    parts = slt.components(params, heads={"attn": NUM_HEADS}, depth=1)
    h0 = slt.estimate_llc(attn_loss, params, data, where=parts["attn.head.0"], key=jax.random.key(2), **HEAD_RUN)
    before = compiles("_chunk_impl")
    h1 = slt.estimate_llc(attn_loss, params, data, where=parts["attn.head.1"], key=jax.random.key(2), **HEAD_RUN)
    assert compiles("_chunk_impl") == before  # the head's entries are data: one program for every head of a layer
    assert h0.llc_mean > 1.0  # a live head: something to compare
    np.testing.assert_allclose(h1.llc_trace, h0.llc_trace, rtol=1e-3, atol=1e-3 * abs(h0.llc_mean))


# Full-batch runs of the exact checks: the value columns and the flat queries select as many entries (8) and share
# a compiled program.
BLOCK_RUN = dict(nbeta=200.0, localization=1.0, step_size=2e-3, num_chains=4, num_burnin=200, num_draws=800)


def _block(head, rows: slice):
    """``where``: the columns ``rows`` of the fused qkv kernel's q|k|v blocks (0: q, 1: k, 2: v) of one head."""
    block = np.zeros((D_MODEL, 3 * D_MODEL), bool)
    block[:, rows] = True

    def where(path, leaf):
        return head(path, leaf) & block if path == ("attn", "qkv", "kernel") else False

    return where


def test_queries_of_a_head_that_writes_nothing_are_flat():
    """With head 1's output rows at zero, its query columns do not affect the output at all: the restricted
    loss is constant and every draw of λ̂ is 0 (any leak into head 0's entries would show)."""
    params = attn_params(dead_out=True)
    data = attn_data(params)
    head = slt.components(params, heads={"attn": NUM_HEADS}, depth=1)["attn.head.1"]
    where = _block(head, slice(0, D_MODEL))
    res = slt.estimate_llc(
        attn_loss, params, data, where=where, key=jax.random.key(3), batch_size=len(data[0]), **BLOCK_RUN
    )
    assert res.num_params == HEAD_DIM * D_MODEL
    # L_n(w_t) never changes (full batch), and λ̂ = nβ(L_n(w_t) - L_n(w*)) is 0 up to the summation order of L_n(w*)
    assert np.all(res.loss_trace == res.loss_trace[0, 0])
    assert np.all(np.abs(res.llc_trace) < 1e-9)


def test_value_columns_of_one_head_match_the_exact_quadratic_value(attn):
    """The output is linear in a head's value columns, so the loss is exactly quadratic in them (w* a global
    minimum, L_n(w*) = 0): full-batch SGLD has the exact λ̂ of quadratic_llc on the eigenvalues of the Hessian in
    those entries. The Hessian is taken over the *whole* kernel and indexed by the layout convention written out
    by hand, so a selector that moved other entries would not match."""
    params, data = attn
    h = 1
    head = slt.components(params, heads={"attn": NUM_HEADS}, depth=1)[f"attn.head.{h}"]
    where = _block(head, slice(2 * D_MODEL, 3 * D_MODEL))

    def kernel_loss(flat):
        p = {"attn": {**params["attn"], "qkv": {**params["attn"]["qkv"], "kernel": flat.reshape(D_MODEL, -1)}}}
        return attn_loss(p, data)

    hess = np.asarray(jax.jit(jax.hessian(kernel_loss))(params["attn"]["qkv"]["kernel"].ravel()), np.float64)
    idx = [i for i in _layout_indices(h) if i % (3 * D_MODEL) >= 2 * D_MODEL]
    eig = np.linalg.eigvalsh(hess[np.ix_(idx, idx)])
    exact = quadratic_llc(eig, BLOCK_RUN["nbeta"], BLOCK_RUN["localization"], BLOCK_RUN["step_size"])
    res = slt.estimate_llc(
        attn_loss, params, data, where=where, key=jax.random.key(4), batch_size=len(data[0]), **BLOCK_RUN
    )
    assert res.num_params == len(idx) == HEAD_DIM * D_MODEL
    assert abs(res.llc_mean - exact) < Z * res.llc_mcse, (res.llc_mean, exact, res.llc_mcse)


# --------------------------------------------------------------------------------------------------- NNX
def _nnx_model(params):
    from flax import nnx

    class Attention(nnx.Module):
        def __init__(self):
            rngs = nnx.Rngs(0)
            self.qkv = nnx.Linear(D_MODEL, 3 * D_MODEL, rngs=rngs)
            self.out = nnx.Linear(D_MODEL, D_MODEL, rngs=rngs)

        def __call__(self, x):
            p = {n: {"kernel": m.kernel[...], "bias": m.bias[...]} for n, m in (("qkv", self.qkv), ("out", self.out))}
            return attention(p, x)

    class Model(nnx.Module):
        def __init__(self):
            self.attn = Attention()

        def __call__(self, x):
            return self.attn(x)

    model = Model()
    for name in ("qkv", "out"):
        layer = getattr(model.attn, name)
        layer.kernel[...] = params["attn"][name]["kernel"]
        layer.bias[...] = params["attn"][name]["bias"]
    return model


def _mse(outputs, targets):
    return 0.5 * jnp.mean(jnp.square(outputs - targets))


def test_nnx_head_restriction_matches_the_pytree_one(attn):
    params, data = attn
    model = _nnx_model(params)
    parts = slt.components(model, heads={"attn": NUM_HEADS})
    assert list(parts) == ["attn.out", "attn.head.0", "attn.head.1", "attn.qkv"]
    head = parts["attn.head.0"]
    assert head.num_selected(model) == head.num_selected(params)
    target = slt.targets.from_nnx(model, data, _mse, where=head)
    assert target.num_parameters == head.num_selected(params)
    kw = dict(key=jax.random.key(5), **HEAD_RUN)
    nnx_res = slt.estimate_llc(model, data, loss=_mse, where=head, **kw)
    tree_res = slt.estimate_llc(attn_loss, params, data, where=head, **kw)
    np.testing.assert_allclose(nnx_res.llc_trace, tree_res.llc_trace, rtol=1e-3, atol=1e-3 * abs(tree_res.llc_mean))
    # the model the target rebuilds keeps everything outside the head at w*
    rebuilt = target.rebuild(jax.tree_util.tree_map(lambda w: w + 1.0, target.position))
    from flax import nnx

    moved = jax.tree_util.tree_map(
        lambda a, b: np.asarray(a) - np.asarray(b), nnx.state(rebuilt, nnx.Param), nnx.state(model, nnx.Param)
    )
    assert np.array_equal(moved["attn"]["out"]["bias"], np.zeros(D_MODEL))
    assert int(sum(np.sum(x) for x in jax.tree_util.tree_leaves(moved))) == head.num_selected(params)


def test_stacked_layout_of_flax_multi_head_attention():
    """flax.nnx.MultiHeadAttention keeps heads on their own axis: query/key/value kernels (d, H, head_dim), biases
    (H, head_dim), out kernel (H, head_dim, d). Head h is the slice [:, h] (kernels), [h] (biases, out kernel)."""
    from flax import nnx

    class Wrapper(nnx.Module):
        def __init__(self):
            self.attn = nnx.MultiHeadAttention(
                num_heads=NUM_HEADS, in_features=D_MODEL, qkv_features=D_MODEL, decode=False, rngs=nnx.Rngs(0)
            )

        def __call__(self, x):
            return self.attn(x)

    model = Wrapper()
    parts = slt.components(model, heads={"attn": (NUM_HEADS, "stacked")})
    head = parts["attn.head.1"]
    kernel = np.zeros((D_MODEL, NUM_HEADS, HEAD_DIM), bool)
    kernel[:, 1] = True
    np.testing.assert_array_equal(head(("attn", "query", "kernel"), kernel), kernel)
    out = np.zeros((NUM_HEADS, HEAD_DIM, D_MODEL), bool)
    out[1] = True
    np.testing.assert_array_equal(head(("attn", "out", "kernel"), out), out)
    per_head = 3 * (D_MODEL * HEAD_DIM + HEAD_DIM) + HEAD_DIM * D_MODEL
    assert head.num_selected(model) == per_head
    x = jax.random.normal(jax.random.key(0), (8, SEQ, D_MODEL))
    target = slt.targets.from_nnx(model, (x, model(x)), _mse, where=head)
    assert target.num_parameters == per_head


# -------------------------------------------------------------------------------- (d) data-restricted LLC
@pytest.fixture(scope="module")
def data_restricted():
    p = slt.models.linear_regression(2, num_data=200, seed=0)
    x, y = p.data
    subsets = {"train": p.data, "first": (x[:50], y[:50]), "odd": (x[1::2][:80], y[1::2][:80])}
    nbeta, gamma, eps = slt.default_nbeta(p.num_data), 1.0, 2e-3
    res = slt.estimate_llc(
        p.loss_fn,
        p.params,
        p.data,
        key=jax.random.key(6),
        step_size=eps,
        localization=gamma,
        batch_size=p.num_data,
        eval_data=subsets,
        **COMMON,
    )
    return p, subsets, res, (nbeta, gamma, eps)


def test_eval_on_the_training_set_reproduces_the_llc(data_restricted):
    _, _, res, _ = data_restricted
    train = res.restricted["train"]
    assert train.num_data == 200
    np.testing.assert_allclose(train.llc_trace, res.llc_trace, rtol=1e-4, atol=1e-4)
    assert train.llc_mean == pytest.approx(res.llc_mean, rel=1e-4)
    assert "eval_data_losses" not in res.observables


def test_restricted_results_save_and_load(data_restricted, tmp_path):
    _, _, res, _ = data_restricted
    res.save(tmp_path / "run")
    back = slt.load(tmp_path / "run")
    assert sorted(back.restricted) == sorted(res.restricted)
    got, want = back.restricted["first"], res.restricted["first"]
    assert type(got) is type(want) and got.llc_mean == want.llc_mean and got.num_data == want.num_data
    np.testing.assert_array_equal(got.llc_trace, want.llc_trace)


def test_eval_on_subsets_matches_the_closed_form(data_restricted):
    """λ̂_S = nβ/2 · tr(H_S Σ_ε): Σ_ε the stationary covariance of full-batch SGLD on the training posterior."""
    p, subsets, res, (nbeta, gamma, eps) = data_restricted
    x = np.asarray(p.data[0], np.float64)
    h, v = np.linalg.eigh(x.T @ x / p.num_data)
    c = nbeta * h + gamma
    sigma = (v / (c * (1 - eps * c / 4))) @ v.T
    for name in ("first", "odd"):
        xs = np.asarray(subsets[name][0], np.float64)
        exact = 0.5 * nbeta * np.trace(xs.T @ xs / len(xs) @ sigma)
        got = res.restricted[name]
        assert got.num_data == len(xs)
        assert np.isfinite(got.llc_mcse) and got.llc_mcse > 0
        assert abs(got.llc_mean - exact) < Z * got.llc_mcse, (name, got.llc_mean, exact, got.llc_mcse)
        # the per-draw values use L_S(w*) on the set itself
        assert got.init_loss == pytest.approx(float(p.loss_fn(p.params, subsets[name])), rel=1e-5)


# ------------------------------------------------------------------------------------------- (e) errors
def test_bad_masks_are_refused(regression):
    p = regression
    make = functools.partial(slt.targets.from_loss_fn, p.loss_fn, p.params, p.data)
    with pytest.raises(ValueError, match="mask of shape \\(3,\\).*leaf's shape"):
        make(where=lambda path, leaf: np.ones(3, bool))
    with pytest.raises(ValueError, match="dtype int"):
        make(where=lambda path, leaf: np.ones(4, int))
    with pytest.raises(ValueError, match="does not index it"):
        make(where=lambda path, leaf: np.s_[:, 0])
    with pytest.raises(ValueError, match="selects no leaf"):
        make(where=lambda path, leaf: np.zeros(4, bool))
    with pytest.raises(ValueError, match="expected a bool"):
        make(where=lambda path, leaf: "w")


def test_bad_head_specs_and_eval_data_are_refused(attn, regression):
    params, _ = attn
    with pytest.raises(ValueError, match="not a multiple of parts × num_heads"):
        slt.components(params, heads={"attn": 3})
    with pytest.raises(ValueError, match="match no module"):
        slt.components(params, heads={"mlp": 2})
    with pytest.raises(ValueError, match="head"):
        slt.head_mask((4, 12), 2, 2, parts=3)
    other = attn_params()
    other["attn"]["qkv"]["kernel"] = jnp.zeros((2 * D_MODEL, 3 * D_MODEL))
    head = slt.components(params, heads={"attn": NUM_HEADS})["attn.head.0"]
    with pytest.raises(ValueError, match="built for another model"):
        slt.targets.from_loss_fn(attn_loss, other, attn_data(params), where=head)
    p = regression
    kw = dict(key=jax.random.key(0), step_size=1e-3, num_draws=10, num_burnin=0)
    with pytest.raises(ValueError, match="`eval_data` must be a non-empty dict"):
        slt.estimate_llc(p.loss_fn, p.params, p.data, eval_data=[p.data], **kw)
    with pytest.raises(ValueError, match="per-example shapes"):
        slt.estimate_llc(p.loss_fn, p.params, p.data, eval_data={"s": (p.data[0][:, :2], p.data[1])}, **kw)
    with pytest.raises(ValueError, match="not shaped like the training data"):
        slt.estimate_llc(p.loss_fn, p.params, p.data, eval_data={"s": p.data[0]}, **kw)
