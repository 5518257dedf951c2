"""Reference transformers (slt.models.gpt, .language, .icl): shapes, causal masking, head slices of the fused q/k/v
projection, evaluation mode, the synthetic language's rules and entropies, the in-context regression baselines
against their closed forms, training, and the wiring into slt.estimate_llc and LLCTracker."""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import slt
from slt.models import icl
from slt.targets import path_names

VOCAB = 16
T = 16  # model context; sequences hold T + 1 tokens


@pytest.fixture(scope="module")
def language():
    return slt.models.SyntheticLanguage(VOCAB, num_induction_tokens=2, num_skip_pairs=2, seed=0)


@pytest.fixture(scope="module")
def tiny_config():
    """One layer, with dropout: built (and returned by the trainer) in evaluation mode."""
    return slt.models.GPTConfig(
        vocab_size=VOCAB, context_length=T, num_layers=1, num_heads=2, d_model=16, d_mlp=32, dropout=0.1
    )


@pytest.fixture(scope="module")
def trained(language, tiny_config):
    """A tiny GPT trained on the language; its data, held-out sample and loss history."""
    train_sample = language.sample(jax.random.key(1), 512, T + 1)
    test_sample = language.sample(jax.random.key(2), 512, T + 1)
    data = slt.models.lm_data(train_sample.tokens)
    model = slt.models.GPT(tiny_config, rngs=nnx.Rngs(0))
    model, history = slt.models.train(
        model, data, key=jax.random.key(3), num_steps=300, learning_rate=1e-2, batch_size=32
    )
    return model, data, test_sample, history


@nnx.jit
def _forward(model, inputs):
    """The model's outputs, compiled (an NNX model called outside jit runs op by op; dropout's RNG is updated)."""
    return model(inputs)


def _num_params(model) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))))


# ------------------------------------------------------------------------------------------------- GPT
def test_shapes_and_causal_masking(tiny_config):
    model = slt.models.GPT(tiny_config, rngs=nnx.Rngs(0))
    tokens = jax.random.randint(jax.random.key(0), (3, T), 0, VOCAB)
    logits = _forward(model, tokens)
    assert logits.shape == (3, T, VOCAB)
    j = 7
    changed = tokens.at[:, j].set((tokens[:, j] + 1) % VOCAB)
    logits2 = _forward(model, changed)
    np.testing.assert_array_equal(np.asarray(logits[:, :j]), np.asarray(logits2[:, :j]))  # the past cannot see it
    assert np.all(np.abs(np.asarray(logits[:, j:] - logits2[:, j:])).max(axis=-1) > 0)  # every later position does
    with pytest.raises(ValueError, match="context_length"):
        model(jnp.zeros((1, T + 1), jnp.int32))


def test_per_token_loss_is_the_token_mean(tiny_config):
    model = slt.models.GPT(tiny_config, rngs=nnx.Rngs(0))
    tokens = jax.random.randint(jax.random.key(0), (4, T + 1), 0, VOCAB)
    per_token = slt.models.per_token_loss(model, tokens)
    assert per_token.shape == (4, T)
    inputs, targets = slt.models.lm_data(tokens)
    logits = _forward(model, inputs)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    expected = -np.take_along_axis(np.asarray(log_probs), np.asarray(targets)[..., None], axis=-1)[..., 0]
    np.testing.assert_allclose(per_token, expected, rtol=1e-6)
    np.testing.assert_allclose(slt.models.token_cross_entropy(logits, targets), expected.mean(), rtol=1e-6)


def test_head_slices_select_exactly_the_heads_entries():
    c = slt.models.GPTConfig(vocab_size=VOCAB, context_length=T, num_layers=2, num_heads=2, d_model=8, d_mlp=0)
    d, dh = c.d_model, c.head_dim
    # the heads partition the fused q/k/v columns and the output rows
    cols = [slt.models.head_slices(c, 1, h)[("blocks", 1, "attn", "qkv", "kernel")][1] for h in range(c.num_heads)]
    assert sorted(np.concatenate(cols).tolist()) == list(range(3 * d))
    for h, own in enumerate(cols):
        assert own.tolist() == [p * d + h * dh + i for p in range(3) for i in range(dh)]  # q, k, v blocks of head h

    model = slt.models.GPT(c, rngs=nnx.Rngs(0))
    paths = {path_names(p) for p, _ in jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]}
    slices = slt.models.head_slices(c, 1, 0)
    assert set(slices) <= paths
    attn = model.blocks[1].attn
    x = jax.random.normal(jax.random.key(1), (2, T, d))
    heads = attn.heads(x)
    # perturbing head 0's q/k/v columns and bias entries changes head 0's output and no other head's
    (_, q_cols) = slices[("blocks", 1, "attn", "qkv", "kernel")]
    kernel, bias = attn.qkv.kernel[...], attn.qkv.bias[...]
    attn.qkv.kernel[...] = kernel.at[:, q_cols].add(0.5 * jax.random.normal(jax.random.key(2), (d, 3 * dh)))
    attn.qkv.bias[...] = bias.at[q_cols].add(0.5)
    perturbed = attn.heads(x)
    assert float(jnp.abs(perturbed[..., 0, :] - heads[..., 0, :]).max()) > 1e-3
    np.testing.assert_array_equal(np.asarray(perturbed[..., 1:, :]), np.asarray(heads[..., 1:, :]))
    attn.qkv.kernel[...], attn.qkv.bias[...] = kernel, bias
    # zeroing head 0's rows of the output projection removes exactly o_0 W_out[rows_0]
    rows = slices[("blocks", 1, "attn", "out", "kernel")][0]
    full = attn(x)
    w_out = attn.out.kernel[...]
    attn.out.kernel[...] = w_out.at[rows].set(0.0)
    np.testing.assert_allclose(attn(x), full - heads[..., 0, :] @ w_out[rows], atol=1e-5)
    attn.out.kernel[...] = w_out
    with pytest.raises(ValueError, match="head"):
        slt.models.head_slices(c, 0, c.num_heads)


def test_head_slices_agree_with_slt_components():
    """The fused layout documented in slt.models.gpt is the one slt.components reads ('fused'): same entries."""
    c = slt.models.GPTConfig(vocab_size=VOCAB, context_length=T, num_layers=2, num_heads=4, d_model=16)
    model = slt.models.GPT(c, rngs=nnx.Rngs(0))
    parts = slt.components(model, heads={"blocks.*.attn": c.num_heads})
    leaves = [(path_names(p), leaf) for p, leaf in jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]]
    for layer in range(c.num_layers):
        for h in range(c.num_heads):
            selector, slices = parts[f"blocks.{layer}.attn.head.{h}"], slt.models.head_slices(c, layer, h)
            for names, leaf in leaves:
                expected = np.zeros(leaf.shape, bool)
                if names in slices:
                    expected[slices[names]] = True
                got = np.broadcast_to(np.asarray(selector(names, leaf)), leaf.shape)
                np.testing.assert_array_equal(got, expected, err_msg=f"{names} layer {layer} head {h}")


def test_evaluation_mode_is_the_default_and_is_deterministic(trained, tiny_config):
    """The config has dropout 0.1: a new model, and the model the trainer returns, are in evaluation mode."""
    model, data, _, _ = trained
    inputs = data[0][:8]
    fresh = slt.models.GPT(tiny_config, rngs=nnx.Rngs(1))
    for m in (fresh, model):
        np.testing.assert_array_equal(np.asarray(_forward(m, inputs)), np.asarray(_forward(m, inputs)))
    fresh.train()  # dropout on: two passes differ, so the check above can fail
    assert not np.array_equal(np.asarray(_forward(fresh, inputs)), np.asarray(_forward(fresh, inputs)))
    fresh.eval()
    np.testing.assert_array_equal(np.asarray(_forward(fresh, inputs)), np.asarray(_forward(fresh, inputs)))


def test_train_rejects_bad_arguments(tiny_config):
    model = slt.models.GPT(tiny_config, rngs=nnx.Rngs(0))
    data = slt.models.lm_data(jnp.zeros((8, T + 1), jnp.int32))
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="batch_size"):
        slt.models.train(model, data, key=key, num_steps=1, learning_rate=1e-3, batch_size=9)
    with pytest.raises(ValueError, match="not both"):
        import optax

        slt.models.train(model, data, key=key, num_steps=1, learning_rate=1e-3, batch_size=4, optimizer=optax.sgd(1))
    with pytest.raises(ValueError, match="learning_rate"):
        slt.models.train(model, data, key=key, num_steps=1, batch_size=4)
    with pytest.raises(ValueError, match="pair"):
        slt.models.train(model, data[0], key=key, num_steps=1, learning_rate=1e-3, batch_size=4)


def test_gpt_learns_the_language(trained, language):
    model, _, test_sample, history = trained
    loss = float(jnp.mean(slt.models.per_token_loss(model, test_sample.tokens)))
    optimal = test_sample.optimal_loss()
    log_v = math.log(VOCAB)
    # printed for the record (pytest -s): the numbers quoted in the module's report
    print(
        f"log V {log_v:.3f}, optimal {optimal:.3f}, bigram entropy rate {language.bigram_entropy():.3f}, "
        f"first steps {history[:20].mean():.3f}, held-out loss {loss:.3f}"
    )
    # 512 held-out sequences x 16 tokens: the Monte-Carlo error of either mean is ~0.02
    assert loss < log_v - 1.0
    assert loss - optimal < 0.25 * (log_v - optimal)  # three quarters of the way from uniform to the optimum


# ----------------------------------------------------------------------------------------- language
def test_language_without_patterns_is_the_bigram_chain():
    lang = slt.models.SyntheticLanguage(12, num_induction_tokens=0, num_skip_pairs=0, induction_rate=0.0, seed=3)
    s = lang.sample(jax.random.key(0), 200, 200)
    tokens, labels = np.asarray(s.tokens), np.asarray(s.labels)
    assert np.all(labels[:, 0] == lang.FIRST) and np.all(labels[:, 1:] == lang.BIGRAM)
    # transition frequencies against P, row by row: binomial error
    counts = np.zeros((12, 12))
    np.add.at(counts, (tokens[:, :-1].ravel(), tokens[:, 1:].ravel()), 1)
    visits = counts.sum(axis=1, keepdims=True)
    p = lang.transition
    se = np.sqrt(p * (1 - p) / visits) + 1e-12
    assert np.all(np.abs(counts / visits - p) <= 5 * se + 1e-3)
    # the recorded entropies after a burn-in average to the chain's entropy rate; error over sequences
    per_sequence = np.asarray(s.entropy)[:, 50:].mean(axis=1)
    mcse = per_sequence.std(ddof=1) / math.sqrt(per_sequence.size)
    assert abs(per_sequence.mean() - lang.bigram_entropy()) < 4 * mcse


def test_language_rules_and_entropies(language):
    s = language.sample(jax.random.key(5), 400, 64)
    tokens, labels = np.asarray(s.tokens), np.asarray(s.labels)
    entropy, logprob = np.asarray(s.entropy), np.asarray(s.logprob)
    n_ord = language.num_ordinary
    triggers = dict(language.skip_pairs.tolist())
    counts = np.bincount(labels.ravel(), minlength=5)
    assert np.all(counts > 0), counts
    for b in range(tokens.shape[0]):
        seen = {}
        for t in range(tokens.shape[1] - 1):
            cur, nxt, label = tokens[b, t], tokens[b, t + 1], labels[b, t + 1]
            if cur >= n_ord:
                if cur in seen:
                    assert label == language.INDUCTION and nxt == seen[cur]
                else:
                    assert label == language.VALUE and nxt < n_ord
                    seen[cur] = nxt
            elif t >= 1 and tokens[b, t - 1] in triggers:
                assert label == language.SKIP
            else:
                assert label == language.BIGRAM
    assert np.all(entropy[labels == language.INDUCTION] == 0)
    np.testing.assert_allclose(entropy[labels == language.VALUE], math.log(n_ord), rtol=1e-6)
    # E[-log p(x)] = H: paired per sequence, error over sequences
    diff = (-logprob[:, 1:] - entropy[:, 1:]).mean(axis=1)
    assert abs(diff.mean()) < 4 * diff.std(ddof=1) / math.sqrt(diff.size)
    # a skip trigger's target follows two positions later with probability q + (1 - q) p_bigram(target)
    skip = labels == language.SKIP
    hit = np.array([tokens[b, t] == triggers[tokens[b, t - 2]] for b, t in zip(*np.nonzero(skip))])
    assert hit.mean() > language.skip_prob - 4 * math.sqrt(0.25 / hit.size)


# ---------------------------------------------------------------------------------- in-context regression
def test_ols_expected_loss_matches_monte_carlo():
    dim, sigma = 6, 0.5
    task = slt.models.ICLTask(dim=dim, num_pairs=14, noise_std=sigma)
    s = task.sample(jax.random.key(0), 8000)
    err = np.square(icl.ols_predictions(s.xs, s.ys) - np.asarray(s.ys, np.float64))
    # positions whose squared error has a finite variance: n <= D - 4 or n >= D + 4 previous pairs
    for n in [0, 1, 2, 10, 11, 12, 13]:
        truth = icl.ols_expected_loss(dim, n, sigma)
        mcse = err[:, n].std(ddof=1) / math.sqrt(err.shape[0])
        assert abs(err[:, n].mean() - truth) < 4 * mcse, (n, err[:, n].mean(), truth, mcse)
    assert icl.ols_expected_loss(dim, dim, sigma) == math.inf


def test_ridge_is_the_posterior_mean():
    """Given the x's, the posterior-mean prediction's expected squared error is σ² + x_kᵀ Σ_k x_k with
    Σ_k = σ² (A_k + σ² I)⁻¹; the paired difference has mean 0 only for the posterior mean."""
    dim, sigma = 3, 0.5
    s = slt.models.ICLTask(dim=dim, num_pairs=8, noise_std=sigma).sample(jax.random.key(1), 20_000)
    xs, ys = np.asarray(s.xs, np.float64), np.asarray(s.ys, np.float64)
    outer = np.einsum("nki,nkj->nkij", xs, xs)
    a = np.cumsum(outer, axis=1) - outer
    cov = sigma**2 * np.linalg.inv(a + sigma**2 * np.eye(dim))
    predictive = sigma**2 + np.einsum("nki,nkij,nkj->nk", xs, cov, xs)
    for predictions, is_bayes in [(icl.ridge_predictions(xs, ys, sigma), True), (icl.ols_predictions(xs, ys), False)]:
        diff = np.square(ys - predictions) - predictive
        z = diff.mean(axis=0) / (diff.std(axis=0, ddof=1) / math.sqrt(diff.shape[0]))
        if is_bayes:
            assert np.all(np.abs(z) < 4), z
        else:  # OLS is worse at the positions where it is defined but noisy (n = D + 2, D + 3 here)
            assert np.any(z[1:] > 4), z
    zero = icl.zero_predictor_loss(dim, sigma)
    np.testing.assert_allclose(np.square(ys[:, 0]).mean(), zero, rtol=4 * math.sqrt(2 / ys.shape[0]))


def test_dmmse_is_the_posterior_mean_over_the_pool():
    task = slt.models.ICLTask(dim=3, num_pairs=6, noise_std=0.2, num_tasks=1)
    s = task.sample(jax.random.key(2), 50)
    pred = icl.dmmse_predictions(s.xs, s.ys, task.task_pool(), noise_std=0.2)
    np.testing.assert_allclose(pred, np.einsum("nkd,nd->nk", s.xs, s.tasks), rtol=1e-5, atol=1e-5)  # one task: known
    # with M tasks, E[(y - ŷ)² | past] = σ² + Var_post(t_mᵀx_k) holds for the posterior mean ŷ only (paired test)
    sigma = 0.5
    task = slt.models.ICLTask(dim=2, num_pairs=6, noise_std=sigma, num_tasks=16)
    s = task.sample(jax.random.key(3), 8000)
    pool, xs, ys = task.task_pool().astype(np.float64), np.asarray(s.xs, np.float64), np.asarray(s.ys, np.float64)
    fit = np.einsum("nkd,md->nkm", xs, pool)
    sq = np.square(ys[..., None] - fit) / (2 * sigma**2)
    log_w = -(np.cumsum(sq, axis=1) - sq)
    w = np.exp(log_w - log_w.max(axis=-1, keepdims=True))
    w /= w.sum(axis=-1, keepdims=True)
    predictive = sigma**2 + np.sum(w * fit**2, axis=-1) - np.sum(w * fit, axis=-1) ** 2
    ridge = icl.ridge_predictions(xs, ys, sigma)
    for predictions, is_bayes in [(icl.dmmse_predictions(xs, ys, pool, sigma, chunk_size=1000), True), (ridge, False)]:
        diff = np.square(ys - predictions) - predictive
        z = diff.mean(axis=0) / (diff.std(axis=0, ddof=1) / math.sqrt(diff.shape[0]))
        if is_bayes:
            assert np.all(np.abs(z) < 4), z
        else:  # ridge ignores the pool: worse once a few pairs are seen
            assert np.all(z[2:] > 4), z


def test_icl_transformer_learns_in_context():
    task = slt.models.ICLTask(dim=2, num_pairs=8, noise_std=0.25)
    config = slt.models.ICLConfig(dim=2, num_pairs=8, num_layers=2, num_heads=2, d_model=16, d_mlp=32)
    model = slt.models.ICLTransformer(config, rngs=nnx.Rngs(0))
    model, history = slt.models.train(
        model,
        task.sample(jax.random.key(0), 4096).data(),
        key=jax.random.key(1),
        num_steps=300,
        learning_rate=1e-2,
        batch_size=64,
    )
    test = task.sample(jax.random.key(2), 2048)
    tokens, ys = test.data()
    err = np.asarray(icl.per_position_loss(model, tokens, ys))
    zero = icl.zero_predictor_loss(2, 0.25)
    ridge = np.square(icl.ridge_predictions(test.xs, test.ys, 0.25) - np.asarray(ys)).mean()
    per_sequence = err.mean(axis=1)
    mcse = per_sequence.std(ddof=1) / math.sqrt(per_sequence.size)
    print(f"ICL: zero predictor {zero:.3f}, ridge (Bayes) {ridge:.3f}, transformer {err.mean():.3f} ± {mcse:.3f}")
    assert err.mean() + 4 * mcse < zero
    # the first prediction has seen no pair: it cannot beat the zero predictor
    assert err[:, 0].mean() > zero - 4 * err[:, 0].std(ddof=1) / math.sqrt(err.shape[0])


# --------------------------------------------------------------------------------------- LLC wiring
def test_estimate_llc_and_tracker_on_the_trained_gpt(trained):
    model, data, _, _ = trained
    d = _num_params(model)
    settings = dict(
        loss=slt.models.token_cross_entropy, step_size=1e-4, num_chains=2, num_draws=100, num_burnin=100, batch_size=32
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", slt.SamplingWarning)  # short chains: R-hat/ESS notes are expected
        result = slt.estimate_llc(model, data, key=jax.random.key(4), **settings)
        print(f"LLC of the trained GPT: {result.llc_mean:.1f} ± {result.llc_std:.1f} (d = {d})")
        assert np.isfinite(result.llc_mean) and 0 < result.llc_mean < d / 2, (result.llc_mean, d)
        # the trainer's callback drives an LLCTracker (records at steps 0 and 2); on a copy, not the shared model
        model = nnx.clone(model)
        tracker = slt.callbacks.LLCTracker(model, data, key=jax.random.key(5), every=2, **settings)
        model, _ = slt.models.train(
            model, data, key=jax.random.key(6), num_steps=2, learning_rate=1e-2, batch_size=32, callback=tracker
        )
    assert tracker.steps == [0, 2]
    assert np.all(np.isfinite(tracker.llc_mean)) and np.all((tracker.llc_mean > 0) & (tracker.llc_mean < d / 2))
