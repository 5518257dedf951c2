"""Reference problems with known learning coefficients: build one, estimate its LLC, compare.

Each builder returns a :class:`ReferenceProblem` ``(loss_fn, params, data, true_llc, multiplicity)``
ready for :func:`slt.estimate_llc` (``loss_fn(params, batch)``, the point w*, the data).

Reference transformers (:mod:`slt.models.gpt`, :mod:`slt.models.icl`, :mod:`slt.models.language`): a small GPT in
Flax NNX with a per-token loss and an optax trainer, a synthetic language with known per-token entropies, and the
in-context linear regression task and transformer. They are imported on first use (they need Flax), so that
``import slt`` does not load Flax.
"""

from __future__ import annotations

from slt.models._problem import ReferenceProblem
from slt.models.dln import deep_linear_network, dln_loss
from slt.models.potentials import normal_crossing
from slt.models.regression import linear_regression
from slt.models.tms import tms, tms_data, tms_init, tms_linear_loss, tms_loss, train_tms

_LAZY = {
    "GPT": "gpt",
    "Block": "gpt",
    "CausalSelfAttention": "gpt",
    "GPTConfig": "gpt",
    "head_slices": "gpt",
    "lm_data": "gpt",
    "per_token_loss": "gpt",
    "token_cross_entropy": "gpt",
    "train": "gpt",
    "ICLConfig": "icl",
    "ICLSample": "icl",
    "ICLTask": "icl",
    "ICLTransformer": "icl",
    "LanguageSample": "language",
    "SyntheticLanguage": "language",
}

__all__ = [
    *_LAZY,
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


def __getattr__(name: str):
    """Import the transformer modules (and Flax) only when one of their names is first used."""
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(f"slt.models.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    if name in ("gpt", "icl", "language"):
        return importlib.import_module(f"slt.models.{name}")
    raise AttributeError(f"module 'slt.models' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
