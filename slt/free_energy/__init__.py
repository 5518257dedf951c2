r"""The temperature axis of the local posterior: local free energy, WBIC, multi-temperature LLC, multiplicity.

With n data points, :math:`L_n` the mean negative log-likelihood, w* the centre, :math:`t = n\beta` and the
normalized localizing prior :math:`\varphi_\gamma = \mathcal N(w^*, \gamma^{-1}I)`, every estimator here
samples :math:`p_t(w) \propto e^{-tL_n(w)}\varphi_\gamma(w)` (:mod:`slt.posterior`) at one or more t:

* :func:`local_free_energy`: :math:`F = -\log\int e^{-n\beta L_n}\varphi_\gamma = \int_0^{n\beta}
  \mathbb E_t[L_n]\,dt`, by thermodynamic integration (:mod:`slt.free_energy._local`);
* :func:`wbic`: :math:`\mathbb E_t[nL_n]` at t = n/log n (Watanabe, JMLR 14, 2013);
* :func:`llc_multitemperature`: λ as the slope of :math:`\mathbb E_\beta[nL_n]` in 1/β (Wei et al., arXiv
  2010.11560);
* :func:`learning_coefficient`: λ itself (and m) by extrapolating λ̂(t) to t → ∞ or by Takio–Suzuki
  (arXiv 2502.09998), with the finite-temperature estimate beside it (:mod:`slt.free_energy._lambda`);
* :func:`fit_multiplicity`, :func:`fit_free_energy_expansion`: λ and m from
  :math:`F_n = nL_n(w_0) + \lambda\log n - (m-1)\log\log n + O_p(1)` across subsample sizes (Watanabe 2009).

Uncertainties: every ``*_std`` here is the Monte-Carlo *standard error of the reported number*, computed
as the MCSE (:func:`slt.diagnostics.mcse`) of the per-draw linear combination of the per-temperature traces
that gives the estimate (so within-chain autocorrelation, the spread between chains and, for common random
numbers, the correlation between temperatures are accounted for). This differs from
:attr:`slt.LLCResult.llc_std`, the spread of one chain.
"""

from __future__ import annotations

from slt.free_energy._lambda import (
    LambdaFit,
    LearningCoefficientResult,
    fit_llc_temperatures,
    learning_coefficient,
)
from slt.free_energy._local import LocalFreeEnergyResult, local_free_energy
from slt.free_energy._multiplicity import MultiplicityResult, fit_free_energy_expansion, fit_multiplicity
from slt.free_energy._multitemperature import MultiTemperatureResult, llc_multitemperature
from slt.free_energy._multitemperature import _wls_coefficients as _wls_coefficients  # tests use it
from slt.free_energy._wbic import WBICResult, wbic

__all__ = [
    "LambdaFit",
    "LearningCoefficientResult",
    "fit_llc_temperatures",
    "learning_coefficient",
    "LocalFreeEnergyResult",
    "MultiTemperatureResult",
    "MultiplicityResult",
    "WBICResult",
    "fit_free_energy_expansion",
    "fit_multiplicity",
    "llc_multitemperature",
    "local_free_energy",
    "wbic",
]
