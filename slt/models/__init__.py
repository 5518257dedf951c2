"""Reference problems with known learning coefficients: build one, estimate its LLC, compare.

Each builder returns a :class:`ReferenceProblem` ``(loss_fn, params, data, true_llc, multiplicity)``
ready for :func:`slt.estimate_llc` (``loss_fn(params, batch)``, the point w*, the data).
"""

from __future__ import annotations

from slt.models._problem import ReferenceProblem
from slt.models.dln import deep_linear_network, dln_loss
from slt.models.potentials import normal_crossing
from slt.models.regression import linear_regression
from slt.models.tms import tms, tms_data, tms_init, tms_linear_loss, tms_loss, train_tms

__all__ = [
    "ReferenceProblem",
    "deep_linear_network",
    "dln_loss",
    "linear_regression",
    "normal_crossing",
    "tms",
    "tms_data",
    "tms_init",
    "tms_linear_loss",
    "tms_loss",
    "train_tms",
]
