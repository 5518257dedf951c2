"""The minibatch index draw: in range, uniform, and exact (randint) for very large data sets."""

import jax
import numpy as np
from scipy import stats

from slt._src import rng


def test_indices_in_range_and_uniform():
    n, size = 7, 70_000
    idx = np.asarray(rng.minibatch_indices(jax.random.key(3), size, n))
    assert idx.shape == (size,) and idx.dtype == np.int32
    assert idx.min() >= 0 and idx.max() < n
    counts = np.bincount(idx, minlength=n)
    # chi-square goodness of fit to the uniform law; fails by chance with probability 1e-3
    assert stats.chisquare(counts).pvalue > 1e-3


def test_blocks_are_independent_of_each_other():
    key = jax.random.key(0)
    a, _ = rng.block_randomness(key, 0, block=50, batch_size=20, num_data=1000)
    b, _ = rng.block_randomness(key, 1, block=50, batch_size=20, num_data=1000)
    assert a.shape == (50, 20)
    # two independent draws of 1,000 indices from 1,000 values agree in about 1 place, not systematically
    assert int(np.sum(np.asarray(a) == np.asarray(b))) < 10


def test_large_data_sets_use_the_exact_draw():
    n = rng.EXACT_INDICES_ABOVE + 1
    key = jax.random.key(1)
    np.testing.assert_array_equal(rng.minibatch_indices(key, 64, n), jax.random.randint(key, (64,), 0, n))
