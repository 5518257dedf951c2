r"""A synthetic language with known structure: bigram, skip-gram and induction patterns, exact per-token entropies.

The vocabulary of V tokens is split into N = V − I *ordinary* tokens ``0 .. N-1`` and I *induction* tokens
``N .. V-1``. A sequence starts with an ordinary token drawn uniformly; then each next token
:math:`x_{t+1}` is drawn from a distribution that is a function of the visible context, chosen by the first
rule that applies:

1. **induction** (label ``INDUCTION``): :math:`x_t` is an induction token that occurred before, at
   :math:`s < t`: then :math:`x_{t+1} = x_{s+1}`, a copy (entropy 0). This is the pattern
   "[A][B] … [A] → [B]" that induction heads implement (Olsson et al. 2022).
2. **value** (label ``VALUE``): :math:`x_t` is an induction token seen for the first time: :math:`x_{t+1}` is
   uniform over the ordinary tokens (entropy :math:`\log N`, unpredictable; it is what a later copy repeats).
3. **skip-gram** (label ``SKIP``): :math:`x_{t-1} = a_i`, one of the ``num_skip_pairs`` trigger tokens: with
   probability q (``skip_prob``) :math:`x_{t+1} = b_i`, its target, else the bigram rule 4. The token two
   positions back decides.
4. **bigram** (label ``BIGRAM``): with probability ρ (``induction_rate``) an induction token, uniform over
   the I of them; else :math:`x_{t+1} \sim P_{x_t, \cdot}`, a fixed Markov transition matrix over the ordinary
   tokens (rows drawn from a Dirichlet with concentration α, ``bigram_concentration``: a few likely successors
   per token).

Because every rule reads only the visible context, the distribution :math:`p(\cdot \mid x_{\le t})` the
generator draws from *is* the true conditional, and :meth:`SyntheticLanguage.sample` records, per token, its
label, the entropy :math:`H_t = -\sum_v p(v \mid x_{<t}) \log p(v \mid x_{<t})` and the log-probability of
the token drawn. The mean of :math:`H_t` over positions ``1 .. T-1`` is the expected cross-entropy of the
Bayes-optimal next-token predictor on such sequences (the lowest loss a model can reach in expectation), and
the mean of ``-logprob`` is its loss on that very sample. Per label, in closed form:

* induction: 0; value: :math:`\log N`;
* bigram at :math:`x_t = i`: :math:`h(\rho) + \rho \log I + (1-\rho) H(P_{i\cdot})`, with :math:`h` the
  binary entropy;
* skip-gram: the entropy of :math:`q\,\delta_{b_i} + (1-q)\,p_{\text{bigram}}(\cdot \mid x_t)`.

With ρ = 0 and no skip pairs the language is the Markov chain alone, whose entropy rate is
:math:`H(P) = -\sum_i \pi_i \sum_j P_{ij} \log P_{ij}` (:meth:`SyntheticLanguage.bigram_entropy`; π the
stationary distribution of P).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from slt._src import validate

__all__ = ["LanguageSample", "SyntheticLanguage"]


class LanguageSample(NamedTuple):
    """Sequences of a :class:`SyntheticLanguage` with what generated each token; all arrays ``(num_sequences, T)``.

    Attributes:
        tokens: int32 token ids.
        labels: int32 rule that drew each token (``SyntheticLanguage.FIRST`` … ``VALUE``; see ``LABELS``).
        entropy: float32 entropy (nats) of the distribution each token was drawn from, given the tokens before.
        logprob: float32 log-probability of the drawn token under that distribution.

    Position t of ``labels[:, 1:]``, ``entropy[:, 1:]`` and ``logprob[:, 1:]`` lines up with position t of
    :func:`slt.models.per_token_loss` (the prediction of token t + 1), so ``labels[:, 1:] == SyntheticLanguage.
    INDUCTION`` selects the tokens a model can only predict by induction: a per-pattern probe set.
    """

    tokens: jax.Array
    labels: jax.Array
    entropy: jax.Array
    logprob: jax.Array

    def optimal_loss(self) -> float:
        """Mean entropy over the predicted positions ``1 .. T-1``: the expected next-token cross-entropy of
        the Bayes-optimal predictor (nats per token), to compare with a model's loss on these sequences."""
        return float(jnp.mean(self.entropy[:, 1:]))


class SyntheticLanguage:
    """The language of the module docstring, with its transition matrix and skip pairs drawn from ``seed``.

    Args:
        vocab_size: V, all tokens (ordinary and induction).
        num_induction_tokens: I (≥ 0); 0 disables the induction and value rules.
        num_skip_pairs: trigger → target pairs among the ordinary tokens (0 disables the skip-gram rule).
        induction_rate: ρ, the probability that the bigram rule emits an induction token.
        skip_prob: q, the probability that a skip-gram trigger's target follows two positions later.
        bigram_concentration: α of the Dirichlet rows of P (smaller: more predictable bigrams).
        seed: seed of P and of the pairs.

    Attributes:
        transition: P, ``(N, N)`` float64.
        skip_pairs: ``(num_skip_pairs, 2)`` int array of (trigger, target).
        num_ordinary: N.
        LABELS: names of the label codes ``FIRST=0, BIGRAM=1, SKIP=2, INDUCTION=3, VALUE=4``.

    Example:
        >>> import jax, math, numpy as np, slt
        >>> lang = slt.models.SyntheticLanguage(32, seed=0)
        >>> s = lang.sample(jax.random.key(0), num_sequences=4, length=64)
        >>> s.tokens.shape, s.labels.shape, int(s.tokens.max()) < 32
        ((4, 64), (4, 64), True)
        >>> copies = np.asarray(s.labels) == lang.INDUCTION  # copied tokens are certain
        >>> bool(np.all(np.asarray(s.entropy)[copies] == 0)), 0 < s.optimal_loss() < math.log(32)
        (True, True)
        >>> round(lang.bigram_entropy(), 3)  # entropy rate of the bigram chain alone, nats
        1.674
    """

    FIRST, BIGRAM, SKIP, INDUCTION, VALUE = range(5)
    LABELS = ("first", "bigram", "skip", "induction", "value")

    def __init__(
        self,
        vocab_size: int = 32,
        *,
        num_induction_tokens: int = 4,
        num_skip_pairs: int = 4,
        induction_rate: float = 0.1,
        skip_prob: float = 0.9,
        bigram_concentration: float = 0.1,
        seed: int = 0,
    ):
        self.vocab_size = validate.int_at_least(vocab_size, "vocab_size", 2)
        self.num_induction_tokens = validate.non_negative_int(num_induction_tokens, "num_induction_tokens")
        self.num_ordinary = self.vocab_size - self.num_induction_tokens
        if self.num_ordinary < 2:
            raise ValueError(
                f"`num_induction_tokens` ({num_induction_tokens}) leaves {self.num_ordinary} ordinary tokens of "
                f"`vocab_size` {vocab_size}; at least 2 are needed."
            )
        self.num_skip_pairs = validate.non_negative_int(num_skip_pairs, "num_skip_pairs")
        if 2 * self.num_skip_pairs > self.num_ordinary:
            raise ValueError(
                f"`num_skip_pairs` ({num_skip_pairs}) needs 2 distinct ordinary tokens each; there are "
                f"{self.num_ordinary}."
            )
        self.induction_rate = float(induction_rate)
        if not 0.0 <= self.induction_rate < 1.0:
            raise ValueError(f"`induction_rate` must be in [0, 1); got {induction_rate!r}.")
        if self.induction_rate > 0 and self.num_induction_tokens == 0:
            raise ValueError("`induction_rate` > 0 needs `num_induction_tokens` >= 1.")
        self.skip_prob = float(skip_prob)
        if not 0.0 <= self.skip_prob <= 1.0:
            raise ValueError(f"`skip_prob` must be in [0, 1]; got {skip_prob!r}.")
        self.bigram_concentration = validate.positive_float(bigram_concentration, "bigram_concentration")
        rng = np.random.default_rng(seed)
        n = self.num_ordinary
        self.transition = rng.dirichlet(np.full(n, self.bigram_concentration), size=n)
        perm = rng.permutation(n)
        k = self.num_skip_pairs
        self.skip_pairs = np.stack([perm[:k], perm[k : 2 * k]], axis=1).astype(np.int32)

    def __repr__(self) -> str:
        return (
            f"SyntheticLanguage(vocab_size={self.vocab_size}, num_induction_tokens={self.num_induction_tokens}, "
            f"num_skip_pairs={self.num_skip_pairs}, induction_rate={self.induction_rate}, "
            f"skip_prob={self.skip_prob}, bigram_concentration={self.bigram_concentration})"
        )

    # ----------------------------------------------------------------------------------------- closed forms
    def stationary(self) -> np.ndarray:
        """π, the stationary distribution of P (the eigenvector of Pᵀ for eigenvalue 1)."""
        values, vectors = np.linalg.eig(self.transition.T)
        pi = np.real(vectors[:, np.argmin(np.abs(values - 1.0))])
        return pi / pi.sum()

    def bigram_entropy(self) -> float:
        r""":math:`H(P) = -\sum_i \pi_i \sum_j P_{ij}\log P_{ij}`, the entropy rate (nats per token) of the bigram
        chain on its own (ρ = 0, no skip pairs)."""
        p = self.transition
        row_entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)
        return float(self.stationary() @ row_entropy)

    # ---------------------------------------------------------------------------------------------- sampler
    def _tables(self):
        n, i_tok, v = self.num_ordinary, self.num_induction_tokens, self.vocab_size
        rho = self.induction_rate
        bigram = np.zeros((v, v))  # row x_t: the bigram rule's distribution (rows of induction tokens unused)
        bigram[:n, :n] = (1.0 - rho) * self.transition
        if i_tok:
            bigram[:n, n:] = rho / i_tok
        skip_target = np.full(v, -1, np.int32)
        skip_target[self.skip_pairs[:, 0]] = self.skip_pairs[:, 1]
        uniform = np.zeros(v)
        uniform[:n] = 1.0 / n
        return (
            jnp.asarray(bigram, jnp.float32),
            jnp.asarray(skip_target),
            jnp.asarray(uniform, jnp.float32),
        )

    def sample(self, key, num_sequences: int, length: int) -> LanguageSample:
        """Draw ``num_sequences`` sequences of ``length`` tokens, with each token's label, entropy and log-probability.

        Deterministic given ``key``; one ``lax.scan`` over positions, vectorized over sequences.
        """
        key = validate.as_key(key)
        num_sequences = validate.positive_int(num_sequences, "num_sequences")
        length = validate.positive_int(length, "length")
        bigram, skip_target, uniform = self._tables()
        return _sample(
            key,
            bigram,
            skip_target,
            uniform,
            jnp.float32(self.skip_prob),
            num_sequences=num_sequences,
            length=length,
            num_ordinary=self.num_ordinary,
            num_induction=self.num_induction_tokens,
        )


def _entropy(p):
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))


def _one_sequence(key, bigram, skip_target, uniform, q, *, length, num_ordinary, num_induction):
    v = bigram.shape[0]
    key0, key = jax.random.split(key)
    first = jax.random.categorical(key0, jnp.log(uniform)).astype(jnp.int32)
    memory = jnp.full((max(num_induction, 1),), -1, jnp.int32)  # the token after each induction token

    def step(carry, step_key):
        prev, cur, memory = carry
        is_induction = cur >= num_ordinary
        slot = jnp.clip(cur - num_ordinary, 0, memory.shape[0] - 1)
        seen = memory[slot] >= 0
        mix = bigram[cur]
        target = jnp.where(prev >= 0, skip_target[jnp.maximum(prev, 0)], -1)
        skip = target >= 0
        skipped = (1.0 - q) * mix + q * jax.nn.one_hot(jnp.maximum(target, 0), v)
        copy = jax.nn.one_hot(jnp.maximum(memory[slot], 0), v)
        dist = jnp.where(
            is_induction,
            jnp.where(seen, copy, uniform),
            jnp.where(skip, skipped, mix),
        )
        label = jnp.where(
            is_induction,
            jnp.where(seen, SyntheticLanguage.INDUCTION, SyntheticLanguage.VALUE),
            jnp.where(skip, SyntheticLanguage.SKIP, SyntheticLanguage.BIGRAM),
        )
        log_dist = jnp.log(dist)
        nxt = jax.random.categorical(step_key, log_dist).astype(jnp.int32)
        memory = jnp.where(is_induction & ~seen, memory.at[slot].set(nxt), memory)
        out = (nxt, label.astype(jnp.int32), _entropy(dist), log_dist[nxt])
        return (cur, nxt, memory), out

    keys = jax.random.split(key, length - 1)
    _, (tokens, labels, entropy, logprob) = jax.lax.scan(step, (jnp.int32(-1), first, memory), keys)
    h0 = jnp.float32(math.log(num_ordinary))
    return (
        jnp.concatenate([first[None], tokens]),
        jnp.concatenate([jnp.array([SyntheticLanguage.FIRST], jnp.int32), labels]),
        jnp.concatenate([h0[None], entropy]),
        jnp.concatenate([-h0[None], logprob]),
    )


@functools.partial(jax.jit, static_argnames=("num_sequences", "length", "num_ordinary", "num_induction"))
def _sample(key, bigram, skip_target, uniform, q, *, num_sequences, length, num_ordinary, num_induction):
    keys = jax.random.split(key, num_sequences)

    def one(k):
        return _one_sequence(
            k,
            bigram,
            skip_target,
            uniform,
            q,
            length=length,
            num_ordinary=num_ordinary,
            num_induction=num_induction,
        )

    return LanguageSample(*jax.vmap(one)(keys))
