from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any, NamedTuple


class ReferenceProblem(NamedTuple):
    """A model at a point w* whose learning coefficient is known.

    Attributes:
        loss_fn: ``loss_fn(params, batch) -> scalar``, batch mean of the per-example NLL.
        params: w*.
        data: pytree of arrays with a leading axis n.
        true_llc: the learning coefficient λ (exact).
        multiplicity: its multiplicity m.

    Example:
        >>> import slt
        >>> p = slt.models.linear_regression(2, num_data=200, seed=0)
        >>> p.num_data, p.num_parameters, p.true_llc, p.multiplicity
        (200, 2, Fraction(1, 1), 1)
        >>> loss_fn, params, data, true_llc, multiplicity = p  # a NamedTuple: unpacks
        >>> float(loss_fn(params, data)) > 0
        True
    """

    loss_fn: Callable
    params: Any
    data: Any
    true_llc: Fraction
    multiplicity: int

    @property
    def num_data(self) -> int:
        import jax

        return int(jax.tree_util.tree_leaves(self.data)[0].shape[0])

    @property
    def num_parameters(self) -> int:
        import jax
        import numpy as np

        return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(self.params)))
