"""The random-number scheme every sampling run shares (the driver and the optax transforms).

One key per chain: ``split(key, num_chains)``. Steps run in blocks of ``block = min(RNG_BLOCK, num_steps)``;
block ``b`` of a chain uses ``fold_in(chain_key, b)``, split into an *index key*, which draws the minibatch
indices of all the block's steps in one ``randint`` call, and a *step key*, split into one kernel key per step.
Drawing per block rather than per step matters on CPU, where random numbers dominate a small model's step.
The numbers depend only on the key, the chain and the step.
"""

from __future__ import annotations

import jax

__all__ = ["RNG_BLOCK", "rng_block", "block_randomness"]

RNG_BLOCK = 100  # steps whose minibatch indices and kernel keys are drawn in one call


def rng_block(num_steps: int) -> int:
    """Steps per RNG block of a run of ``num_steps`` steps."""
    return min(RNG_BLOCK, int(num_steps))


def block_randomness(chain_key, b, *, block: int, batch_size: int, num_data: int):
    """``(indices (block, batch_size) or None for full batches, kernel keys (block,))`` of block ``b``."""
    index_key, step_key = jax.random.split(jax.random.fold_in(chain_key, b))
    full_batch = batch_size == num_data
    idx = None if full_batch else jax.random.randint(index_key, (block, batch_size), 0, num_data)
    return idx, jax.random.split(step_key, block)
