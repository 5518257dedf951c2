r"""The description-length reading of the learning coefficient: bits to pin a solution down to a loss tolerance.

Volume scaling (Watanabe, *Algebraic Geometry and Statistical Learning Theory*, 2009, Ch. 7; the local form is
the definition of the LLC in Lau et al., arXiv 2308.12108, Def. 1): near a minimum w* with excess loss
:math:`K(w) = L(w) - L(w^*)`, the volume of the set of parameters within loss tolerance δ scales as

.. math:: V(\delta) = \operatorname{vol}\{w : K(w) < \delta\} = c\,\delta^{\lambda}\,(\log 1/\delta)^{m-1}\,(1 + o(1)),
          \qquad \delta \to 0,

with λ the (local) learning coefficient and m its multiplicity. Describing w* to tolerance δ, beyond a coarse
description that fixes it to tolerance δ₀ > δ, means singling out the region :math:`\{K < \delta\}` inside
:math:`\{K < \delta_0\}`: about :math:`-\log_2 V(\delta)/V(\delta_0)` bits (Murfet, after Watanabe Thm 7.1):

.. math:: \mathrm{bits}(\delta; \delta_0) = \lambda \log_2\frac{\delta_0}{\delta}
          - (m - 1)\log_2\frac{\log(1/\delta)}{\log(1/\delta_0)} .

Each halving of the tolerance costs λ bits (less a vanishing log-log term when m > 1). A regular model
(λ = d/2) pays d/2 bits per halving; a singular one pays fewer: the learning coefficient is the number of
"effective" parameters that need describing. The law fixes V only up to the constant c and the factor
1 + o(1), so the bits are meaningful as differences between tolerances well inside the region where the law
holds; their error is the log₂ of the ratio of those correction factors at δ and δ₀ (for a normal crossing,
:math:`O(\delta^{\lambda' - \lambda})` with λ' the next exponent when m = 1, but :math:`O(1/(\lambda\log(1/\delta)))`
when m > 1: slow).

The same λ is the Bayes generalization error's leading term (Watanabe 2009, Thm 1.2 / main formula): at β = 1,
:math:`\mathbb E[G_n] = L(w_0) + \lambda/n + o(1/n)` nats per sample, given beside the bits.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from slt._src.results import Result

__all__ = ["DescriptionLength", "description_length"]


@dataclasses.dataclass
class DescriptionLength(Result):
    """Bits to refine a solution to loss tolerance ``tolerance``, from λ (:func:`description_length`).

    Attributes:
        bits: bits beyond the coarse description (a float, or an array shaped like ``tolerance``).
        bits_se: standard error of ``bits`` from ``llc_se`` (λ's uncertainty; m is taken as exact).
        tolerance: δ, the loss tolerance (excess loss over w*, in the loss's units, e.g. nats per sample).
        coarse_tolerance: δ₀, the tolerance of the coarse description; ``None``: the volume law's own unit
            (bits = −log₂[δ^λ (log 1/δ)^(m−1)], i.e. λ·log₂(1/δ) when m = 1).
        llc, llc_se, multiplicity: the λ, its standard error and the m used.
        num_data: n, when known.
        generalization_error: λ/n, the leading excess Bayes generalization error at β = 1 in nats per sample
            (``None`` without n); ``generalization_error_se``: ``llc_se / n``.
    """

    bits: float | np.ndarray
    bits_se: float | np.ndarray
    tolerance: float | np.ndarray
    coarse_tolerance: float | None
    llc: float
    llc_se: float
    multiplicity: int
    num_data: int | None = None
    generalization_error: float | None = None
    generalization_error_se: float | None = None

    @property
    def bits_per_halving(self) -> float:
        """λ: the cost of halving the tolerance, in bits, once the log-log term (m > 1) is negligible."""
        return self.llc

    def summary(self) -> str:
        tol = np.atleast_1d(self.tolerance)
        bits, se = np.atleast_1d(self.bits), np.atleast_1d(self.bits_se)
        ref = "the volume law's unit" if self.coarse_tolerance is None else f"δ₀ = {self.coarse_tolerance:.3g}"
        lines = [
            f"description length at λ = {self.llc:.4g} ± {self.llc_se:.2g}, m = {self.multiplicity} "
            f"(bits beyond the coarse description, {ref})"
        ]
        lines += [f"  δ = {d:<10.3g} {b:9.3f} ± {s:.2g} bits" for d, b, s in zip(tol, bits, se)]
        if self.generalization_error is not None:
            lines.append(
                f"Bayes generalization error λ/n = {self.generalization_error:.4g} ± {self.generalization_error_se:.2g}"
                f" nats per sample (n = {self.num_data})"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def description_length(
    llc: float,
    tolerance,
    *,
    multiplicity: int = 1,
    coarse_tolerance: float | None = None,
    llc_se: float = 0.0,
    num_data: int | None = None,
) -> DescriptionLength:
    r"""Bits to refine a solution to loss tolerance δ, beyond a coarse description, from λ and m.

    .. math:: \mathrm{bits}(\delta; \delta_0) = -\log_2\frac{V(\delta)}{V(\delta_0)}
              = \lambda\log_2\frac{\delta_0}{\delta} - (m-1)\log_2\frac{\log(1/\delta)}{\log(1/\delta_0)},
              \qquad V(\delta) \propto \delta^\lambda (\log 1/\delta)^{m-1}

    (the volume-scaling law; Watanabe 2009, Ch. 7; Lau et al., arXiv 2308.12108; see the module docstring).
    With ``coarse_tolerance=None`` the reference is the law's own unit: bits = −log₂[δ^λ (log 1/δ)^(m−1)],
    which is λ·log₂(1/δ) for m = 1 (Murfet's reading: each refinement costs about λ bits per halving). Only
    differences between tolerances are free of the law's unknown constant.

    Args:
        llc: λ (e.g. ``LLCResult.llc_mean``, or a closed form from :mod:`slt.theory`); finite and ≥ 0.
        tolerance: δ > 0 (a number or an array), the excess loss allowed, in the loss's units; below
            ``coarse_tolerance``, and below 1 when m > 1 (the law is an asymptotic in δ → 0).
        multiplicity: m ≥ 1 (``slt.theory`` gives it for the closed forms).
        coarse_tolerance: δ₀ > δ, the tolerance the coarse description already achieves; ``None``: see above.
        llc_se: the standard error of λ (e.g. ``LLCResult.llc_mcse``): ``bits_se = llc_se · log₂(δ₀/δ)``.
        num_data: n, to report the Bayes generalization error λ/n beside the bits.

    Returns:
        :class:`DescriptionLength`.

    Example:
        >>> import slt
        >>> dl = slt.theory.description_length(2.0, [1e-2, 1e-4], llc_se=0.1, num_data=1000)
        >>> [round(float(b), 2) for b in dl.bits], [round(float(s), 2) for s in dl.bits_se]  # 2·log₂(1/δ)
        ([13.29, 26.58], [0.66, 1.33])
        >>> dl.generalization_error  # λ/n nats per sample
        0.002
        >>> lam, m = slt.theory.normal_crossing([1, 1])  # K = x²y²: λ = 1/2, m = 2
        >>> dl = slt.theory.description_length(float(lam), 1e-8, multiplicity=m, coarse_tolerance=1e-4)
        >>> round(float(dl.bits), 3)  # ½·log₂(10⁴) − log₂(log 10⁸ / log 10⁴) = 6.644 − 1
        5.644
    """
    lam = _finite(llc, "llc")
    if lam < 0:
        raise ValueError(
            f"`llc` must be >= 0; got {lam!r}. A negative λ̂ means w* is not a local minimum (the chains found "
            "lower loss): no volume law holds there."
        )
    se = _finite(llc_se, "llc_se")
    if se < 0:
        raise ValueError(f"`llc_se` must be >= 0; got {se!r}.")
    if isinstance(multiplicity, bool) or not isinstance(multiplicity, (int, np.integer)) or multiplicity < 1:
        raise ValueError(f"`multiplicity` must be an integer >= 1; got {multiplicity!r}.")
    m = int(multiplicity)
    delta = np.asarray(tolerance, dtype=np.float64)
    if delta.size == 0 or not np.all(np.isfinite(delta)) or np.any(delta <= 0):
        raise ValueError(f"`tolerance` must be positive finite number(s); got {tolerance!r}.")
    if m > 1 and np.any(delta >= 1):
        raise ValueError(
            f"`tolerance` must be < 1 when multiplicity > 1 (the law V ∝ δ^λ (log 1/δ)^(m-1) is for δ → 0); "
            f"got {tolerance!r}."
        )
    if coarse_tolerance is None:
        ref_log2 = 0.0  # log₂ δ₀ with δ₀ = 1
        loglog = np.log2(np.log(1 / delta)) if m > 1 else np.zeros_like(delta)
    else:
        d0 = _finite(coarse_tolerance, "coarse_tolerance")
        if not 0 < d0 or (m > 1 and d0 >= 1):
            raise ValueError(f"`coarse_tolerance` must be in (0, {'1' if m > 1 else '∞'}); got {coarse_tolerance!r}.")
        if np.any(delta >= d0):
            raise ValueError(
                f"`tolerance` must be below `coarse_tolerance` = {d0!r} (a refinement); got {tolerance!r}."
            )
        ref_log2 = math.log2(d0)
        loglog = np.log2(np.log(1 / delta) / math.log(1 / d0)) if m > 1 else np.zeros_like(delta)
    halvings = ref_log2 - np.log2(delta)  # log₂(δ₀/δ)
    bits = lam * halvings - (m - 1) * loglog
    bits_se = se * halvings
    if delta.ndim == 0:
        bits, bits_se, tol = float(bits), float(bits_se), float(delta)
    else:
        tol = delta
    gen = gen_se = None
    if num_data is not None:
        if isinstance(num_data, bool) or not isinstance(num_data, (int, np.integer)) or num_data < 1:
            raise ValueError(f"`num_data` must be a positive integer; got {num_data!r}.")
        num_data = int(num_data)
        gen, gen_se = lam / num_data, se / num_data
    return DescriptionLength(
        bits=bits,
        bits_se=bits_se,
        tolerance=tol,
        coarse_tolerance=None if coarse_tolerance is None else float(coarse_tolerance),
        llc=lam,
        llc_se=se,
        multiplicity=m,
        num_data=num_data,
        generalization_error=gen,
        generalization_error_se=gen_se,
    )


def _finite(value, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a finite number; got {value!r}.") from None
    if not math.isfinite(out):
        raise ValueError(f"`{name}` must be a finite number; got {value!r}.")
    return out
