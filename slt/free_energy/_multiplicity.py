r"""The learning coefficient λ and the multiplicity m from local free energies on nested subsamples.

:math:`F_n = nL_n(w^*) + \lambda\log n - (m-1)\log\log n + O_p(1)` (Watanabe, *Algebraic Geometry and
Statistical Learning Theory*, 2009), fitted across subsample sizes n (:func:`fit_free_energy_expansion`, which
explains why m is hard to resolve); :func:`fit_multiplicity` computes the free energies first.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import jax
import numpy as np

from slt._src.results import Result
from slt._src.validate import as_key
from slt.free_energy._common import _take
from slt.free_energy._local import _free_energy_of_target
from slt.targets import make_target

__all__ = [
    "LOGLOG_RANGE_MIN",
    "MULTIPLICITY_STD_MAX",
    "MultiplicityResult",
    "fit_free_energy_expansion",
    "fit_multiplicity",
]


@dataclasses.dataclass
class MultiplicityResult(Result):
    r"""Result of :func:`fit_free_energy_expansion` / :func:`fit_multiplicity`.

    The model: :math:`F_j - n_j \bar L_j = \lambda\log n_j - (m-1)\log\log n_j + c\;[+\,d/\log n_j]`, with
    :math:`\bar L_j` the reference loss: :math:`L_{n_j}(w^*)` (Watanabe's form) or the posterior mean
    :math:`\mathbb E_{\beta=1}[L_{n_j}]`, which makes the left side :math:`\mathrm{KL}(p_1\,\|\,\varphi_\gamma)`.

    Attributes:
        llc, llc_std: λ and its standard error (``llc_std = 0`` when λ was fixed).
        multiplicity, multiplicity_std: m and its standard error.
        constant, constant_std: c.
        inverse_log_coefficient: d (NaN when that term is not fitted).
        resolved: whether the data pin down m well enough to tell neighbouring integers apart.
        message: why not (or a caveat), in words.
        num_data: (J,) the subsample sizes; free_energy, reference_loss: (J,) inputs.
        excess: (J,) :math:`F_j - n_j \bar L_j`, the regressand; excess_std: (J,) its standard errors.
        fitted: (J,) the model at the fit.
        reference: ``"center"`` or ``"posterior"`` (see :func:`fit_multiplicity`), or ``"given"``.
        chi2, dof: weighted residuals of the fit.
        covariance: covariance of the fitted coefficients (scaled up by χ²/dof when that exceeds 1).
        results: the :class:`LocalFreeEnergyResult` of each subsample (when computed by
            :func:`fit_multiplicity`).
        subsample_indices: (n,) the permutation of the data; subsample j is its first ``num_data[j]``
            entries (when computed by :func:`fit_multiplicity`).

    Example:
        >>> import numpy as np, slt
        >>> n = np.array([1e2, 1e3, 1e4, 1e5, 1e6])
        >>> free_energy = 0.1 * n + 0.5 * np.log(n) - (2 - 1) * np.log(np.log(n)) + 3.0  # λ = 1/2, m = 2, c = 3
        >>> res = slt.fit_free_energy_expansion(n, free_energy, reference_loss=np.full(5, 0.1))
        >>> res.num_data.tolist(), bool(np.allclose(res.fitted, res.excess)), res.llc_fixed
        ([100, 1000, 10000, 100000, 1000000], True, False)
    """

    llc: float
    llc_std: float
    multiplicity: float
    multiplicity_std: float
    constant: float
    constant_std: float
    inverse_log_coefficient: float
    resolved: bool
    message: str
    num_data: np.ndarray
    free_energy: np.ndarray
    reference_loss: np.ndarray
    excess: np.ndarray
    excess_std: np.ndarray
    fitted: np.ndarray
    chi2: float
    dof: int
    covariance: np.ndarray
    llc_fixed: bool
    reference: str = "given"
    results: list = dataclasses.field(default_factory=list)
    subsample_indices: np.ndarray | None = None

    def summary(self) -> str:
        lam = f"λ = {self.llc:.4g}" + (" (fixed)" if self.llc_fixed else f" ± {self.llc_std:.2g}")
        lines = [
            f"{lam}, m = {self.multiplicity:.3g} ± {self.multiplicity_std:.2g}, c = {self.constant:.4g} ± "
            f"{self.constant_std:.2g}; χ²/dof = {self.chi2:.3g}/{self.dof}",
            f"{'resolved' if self.resolved else 'NOT resolved'}: {self.message}",
            "          n      F_n − n·L_ref    ± std      fit",
        ]
        for j in range(self.num_data.size):
            lines.append(
                f"{self.num_data[j]:>11d} {self.excess[j]:>17.5g} {self.excess_std[j]:>9.2g} {self.fitted[j]:>9.5g}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"MultiplicityResult(llc={self.llc:.4g}, multiplicity={self.multiplicity:.3g} ± "
            f"{self.multiplicity_std:.2g}, resolved={self.resolved})"
        )

    def plot(self):
        """:math:`F_n - nL_n(w^*)` against log n with the fit. Returns the figure."""
        from slt.plotting import _pyplot

        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(5.5, 4))
        ln = np.log(self.num_data)
        ax.errorbar(ln, self.excess, yerr=2 * self.excess_std, fmt="o", capsize=3, label="thermodynamic integration")
        ax.plot(
            ln,
            self.fitted,
            "-",
            lw=1,
            label=f"λ = {self.llc:.3g}, m = {self.multiplicity:.2g} ± {self.multiplicity_std:.1g}",
        )
        ax.set_xlabel("log n")
        ax.set_ylabel("F_n − n L_ref" + (" = KL(posterior ‖ prior)" if self.reference == "posterior" else ""))
        ax.legend()
        fig.tight_layout()
        return fig


#: ``resolved`` needs the standard error of m below this (neighbouring integers ~2σ apart) ...
MULTIPLICITY_STD_MAX = 0.5
#: ... and log log n to span at least this much.
LOGLOG_RANGE_MIN = 0.5


def fit_free_energy_expansion(
    num_data,
    free_energy,
    reference_loss,
    free_energy_std=None,
    *,
    llc: float | None = None,
    inverse_log_term: bool = False,
    warn: bool = True,
) -> MultiplicityResult:
    r"""Fit :math:`F_n - n\bar L_n = \lambda\log n - (m-1)\log\log n + c\;[+\,d/\log n]` across sizes n.

    Watanabe's expansion of the free energy (*Algebraic Geometry and Statistical Learning Theory*, 2009),
    :math:`F_n = nL_n(w_0) + \lambda\log n - (m-1)\log\log n + O_p(1)`, with its O(1) term taken constant,
    by weighted least squares (weights :math:`1/\sigma_j^2` from ``free_energy_std``; the coefficient
    covariance is scaled by χ²/dof when that exceeds 1, so misfit widens the error bars). The reference loss
    :math:`\bar L_n` is :math:`L_n(w^*)` for Watanabe's form, or any other per-size loss whose difference from
    it is :math:`O_p(1)/n`, such as the posterior mean :math:`\mathbb E_{\beta=1}[L_n]` (see
    :func:`fit_multiplicity`).

    **Why m is hard.** Over any practical range :math:`\log\log n` is almost a linear function of
    :math:`\log n`, so m is nearly confounded with λ and c, and the terms left out, :math:`O(1/\log n)` when
    m > 1, bias it. Exact free energies of :math:`K = x^2y^2` (λ = ½, m = 2, γ = 1; 1-D quadrature) over
    n = 1e2 … 1e6 give m = 1.61 from this fit (1.78 with λ fixed at ½); adding the :math:`d/\log n` term
    (``inverse_log_term=True``) gives 1.89 (1.95), at the price of much larger statistical errors. Fixing λ
    (``llc=``) when it is known from theory or from a precise LLC estimate helps the most.

    ``resolved`` is False, with a :class:`UserWarning` saying so (unless ``warn=False``), when the standard
    error of m exceeds ``MULTIPLICITY_STD_MAX`` = 0.5 or log log n spans less than ``LOGLOG_RANGE_MIN`` =
    0.5 (n_max < n_min^1.65). Even when resolved, read m as "about 1" or "clearly above 1".

    Args:
        num_data: (J,) sizes n_j (distinct, ≥ 3).
        free_energy: (J,) :math:`F_{n_j}`.
        reference_loss: (J,) :math:`\bar L_{n_j}`, e.g. :math:`L_{n_j}(w^*)` of each subsample.
        free_energy_std: (J,) standard errors of :math:`F_{n_j} - n_j\bar L_{n_j}`; ``None`` for an
            unweighted fit (its error bars then come from the residuals alone).
        llc: fix λ at this value and fit only m and c.
        inverse_log_term: also fit a :math:`d/\log n` term.
        warn: emit the warning when m is not resolved.

    Example:
        >>> import numpy as np, slt
        >>> n = np.array([1e2, 1e3, 1e4, 1e5, 1e6])
        >>> free_energy = 0.1 * n + 0.5 * np.log(n) - (2 - 1) * np.log(np.log(n)) + 3.0  # λ = 1/2, m = 2, c = 3
        >>> res = slt.fit_free_energy_expansion(n, free_energy, reference_loss=np.full(5, 0.1))
        >>> round(res.llc, 6), round(res.multiplicity, 6), round(res.constant, 6), res.resolved
        (0.5, 2.0, 3.0, True)
        >>> fixed = slt.fit_free_energy_expansion(n, free_energy, np.full(5, 0.1), llc=0.5)  # λ known
        >>> round(fixed.multiplicity, 6), fixed.llc_std
        (2.0, 0.0)
    """
    n = np.asarray(num_data, dtype=np.float64)
    f = np.asarray(free_energy, dtype=np.float64)
    lc = np.asarray(reference_loss, dtype=np.float64)
    if n.ndim != 1 or f.shape != n.shape or lc.shape != n.shape:
        raise ValueError(
            f"`num_data`, `free_energy` and `reference_loss` must be 1-D arrays of one length; got shapes "
            f"{n.shape}, {f.shape}, {lc.shape}."
        )
    if not np.all(np.isfinite(n) & (n >= 3)) or np.unique(n).size != n.size:
        raise ValueError(f"`num_data` must be distinct sizes >= 3 (log log n must be positive); got {n}.")
    if not np.all(np.isfinite(f) & np.isfinite(lc)):
        raise ValueError("`free_energy` and `reference_loss` must be finite.")
    if free_energy_std is None:
        sigma = np.ones_like(n)
        weighted = False
    else:
        sigma = np.asarray(free_energy_std, dtype=np.float64)
        if sigma.shape != n.shape or not np.all(np.isfinite(sigma) & (sigma >= 0)):
            raise ValueError(f"`free_energy_std` must be finite, >= 0 and of shape {n.shape}; got {sigma}.")
        weighted = bool(np.all(sigma > 0))
        if not weighted:
            sigma = np.ones_like(n)
    ln = np.log(n)
    lln = np.log(ln)
    excess = f - n * lc
    columns = [] if llc is not None else [ln]
    columns += [-lln, np.ones_like(n)]
    if inverse_log_term:
        columns.append(1.0 / ln)
    design = np.stack(columns, axis=1)
    target = excess - (0.0 if llc is None else float(llc) * ln)
    num_params = design.shape[1]
    if n.size < num_params:
        raise ValueError(f"fitting {num_params} coefficients needs at least {num_params} sizes; got {n.size}.")
    sw = 1.0 / sigma
    coef, *_ = np.linalg.lstsq(design * sw[:, None], target * sw, rcond=None)
    fitted_part = design @ coef
    residual = target - fitted_part
    chi2 = float(np.sum((residual * sw) ** 2))
    dof = int(n.size - num_params)
    cov = np.linalg.pinv((design * sw[:, None]).T @ (design * sw[:, None]))
    if not weighted:
        cov = cov * (chi2 / dof if dof > 0 else np.nan)
    elif dof > 0 and chi2 / dof > 1:
        cov = cov * (chi2 / dof)
    std = np.sqrt(np.clip(np.diag(cov), 0, None))
    i = 0
    if llc is None:
        lam, lam_std = float(coef[0]), float(std[0])
        i = 1
    else:
        lam, lam_std = float(llc), 0.0
    m, m_std = 1.0 + float(coef[i]), float(std[i])
    c, c_std = float(coef[i + 1]), float(std[i + 1])
    d = float(coef[i + 2]) if inverse_log_term else float("nan")
    span = float(lln.max() - lln.min())
    problems = []
    if not np.isfinite(m_std) or m_std > MULTIPLICITY_STD_MAX:
        problems.append(
            f"the standard error of m is {m_std:.2g} (> {MULTIPLICITY_STD_MAX}): the free energies are too noisy, "
            "or too few, to separate -(m-1) log log n from λ log n and the constant"
        )
    if span < LOGLOG_RANGE_MIN:
        problems.append(
            f"log log n spans only {span:.2g} (n = {int(n.min())} … {int(n.max())}; needs ≥ {LOGLOG_RANGE_MIN}): "
            "over so short a range log log n is indistinguishable from a linear function of log n"
        )
    resolved = not problems
    if resolved:
        message = (
            f"m = {m:.2g} ± {m_std:.1g}. Caveat: terms left out of the expansion (O(1/log n) when m > 1) bias m "
            "towards 1 at practical n; read it as 'about 1' or 'clearly above 1'."
        )
    else:
        message = (
            "the data cannot resolve the multiplicity m: "
            + "; ".join(problems)
            + (". Fix λ with llc=... if it is known, widen the range of n, or reduce the Monte-Carlo error.")
        )
        if warn:
            warnings.warn(message, UserWarning, stacklevel=2)
    fitted = fitted_part + (0.0 if llc is None else float(llc) * ln)
    return MultiplicityResult(
        llc=lam,
        llc_std=lam_std,
        multiplicity=m,
        multiplicity_std=m_std,
        constant=c,
        constant_std=c_std,
        inverse_log_coefficient=d,
        resolved=resolved,
        message=message,
        num_data=n.astype(np.int64),
        free_energy=f,
        reference_loss=lc,
        excess=excess,
        excess_std=np.asarray(free_energy_std, dtype=np.float64) if free_energy_std is not None else np.zeros_like(n),
        fitted=fitted,
        chi2=chi2,
        dof=dof,
        covariance=cov,
        llc_fixed=llc is not None,
    )


def fit_multiplicity(
    model_or_loss,
    *args,
    key,
    localization,
    step_size,
    subsample_sizes,
    reference: str = "posterior",
    llc: float | None = None,
    inverse_log_term: bool = False,
    num_temperatures: int = 12,
    tail_tolerance: float = 0.01,
    scale_step_size: bool = True,
    num_prior_samples: int = 256,
    num_chains: int = 4,
    num_draws: int = 2000,
    num_burnin: int = 1000,
    batch_size: int | None = None,
    sampler: Any = "sgld",
    sampler_params: dict | None = None,
    loss=None,
    where=None,
    progress: bool = False,
    chunk_size: int = 1024,
) -> MultiplicityResult:
    r"""Learning coefficient and multiplicity from local free energies on nested subsamples of the data.

    For each size :math:`n_j` in ``subsample_sizes`` the first :math:`n_j` examples of one random
    permutation of the data (nested subsamples, so the free energies share their data and differ smoothly)
    get :func:`local_free_energy` at β = 1 (nβ = :math:`n_j`), with independent keys; then
    :func:`fit_free_energy_expansion` fits :math:`F_n - n\bar L_n = \lambda\log n - (m-1)\log\log n + c`.
    Each size compiles its own sampler (the data shape differs).

    **Which reference** :math:`\bar L_n`. ``reference="center"`` is Watanabe's form with w* in place of the
    true parameter, :math:`\bar L_n = L_n(w^*)`. Its :math:`O_p(1)` term is random and differs between
    sizes: w* is the same point for every subsample, not the subsample's minimizer :math:`\hat w_n`, and for a
    regular model the term contains :math:`-\frac n2 (\hat w_n - w^*)^\top H (\hat w_n - w^*)`, about
    :math:`-\frac12\chi^2_d` at :math:`n \ll` the full size. On linear regression (d = 4, n_j = 125 … 1000)
    that scatter (several nats) swamps :math:`\lambda\log n` and the fit returns nonsense. The default,
    ``reference="posterior"``, uses :math:`\bar L_n = \mathbb E_{\beta=1}[L_n]` from the same run, so the
    regressand is :math:`F_n - n\mathbb E_1[L_n] = \mathrm{KL}(p_1\,\|\,\varphi_\gamma)`
    (``kl_divergence``): it does not involve w* at all, and for a regular model the random term cancels
    exactly (:math:`\mathrm{KL} = \frac12\log\det(I + nH/\gamma) - \frac d2 + O(\gamma/n)`); its
    expansion has the same :math:`\lambda\log n - (m-1)\log\log n` (the O(1) term absorbs
    :math:`-\lambda`; for singular models :math:`\mathbb E_1[nL_n] - nL_n(w_0)` is :math:`O_p(1)`, so the
    expansion holds, with a random constant that we have not characterized).

    ``step_size`` is the step for the largest size; with ``scale_step_size`` every run scales it by the
    curvature rule of :func:`local_free_energy` from that reference, so smaller subsamples (flatter
    posteriors) get proportionally larger steps and mix as fast.

    The χ²/dof scaling of the covariance lets the error bars reflect scatter beyond Monte Carlo when there
    are spare degrees of freedom (at least 4 sizes for 3 coefficients).

    Args:
        subsample_sizes: sizes (distinct, 3 ≤ n_j ≤ n); the step size and ``batch_size`` (clipped to n_j)
            are shared; ``step_size`` should suit the largest size (the stiffest posterior).
        reference: ``"posterior"`` (default) or ``"center"``, see above.
        llc, inverse_log_term: see :func:`fit_free_energy_expansion`.
        everything else: as :func:`local_free_energy`.

    Returns:
        :class:`MultiplicityResult` with the per-size :class:`LocalFreeEnergyResult` in ``results``.

    Example:
        >>> import jax, numpy as np, slt
        >>> p = slt.models.linear_regression(2, num_data=200, seed=0)  # regular: λ = d/2 = 1
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")  # two sizes cannot resolve m; the fit warns that it says so
        ...     res = slt.fit_multiplicity(p.loss_fn, p.params, p.data, key=jax.random.key(0), localization=1.0,
        ...                                step_size=1e-3, subsample_sizes=[100, 200], llc=1.0, num_temperatures=8,
        ...                                num_chains=2, num_draws=1000, num_burnin=100)
        >>> len(res.results), res.num_data.tolist(), res.llc, res.resolved, res.reference
        (2, [100, 200], 1.0, False, 'posterior')
        >>> bool(res.excess[1] > res.excess[0])  # the KL divergence grows with n, like λ log n
        True
    """
    key = as_key(key)
    target = make_target(model_or_loss, *args, loss=loss, where=where)
    if reference not in ("posterior", "center"):
        raise ValueError(f"`reference` must be 'posterior' or 'center'; got {reference!r}.")
    sizes = np.asarray(subsample_sizes)
    if sizes.ndim != 1 or sizes.size < 2 or not np.issubdtype(sizes.dtype, np.integer):
        raise ValueError(f"`subsample_sizes` must be a 1-D sequence of integers; got {subsample_sizes!r}.")
    sizes = np.sort(sizes)
    if sizes[0] < 3 or sizes[-1] > target.num_data or np.unique(sizes).size != sizes.size:
        raise ValueError(
            f"`subsample_sizes` must be distinct integers in [3, n = {target.num_data}]; got {list(subsample_sizes)}."
        )
    needed = (2 if llc is not None else 3) + int(bool(inverse_log_term))
    if sizes.size < needed:
        raise ValueError(f"`subsample_sizes` needs at least {needed} sizes for this fit; got {sizes.size}.")
    perm_key, run_key = jax.random.split(key)
    perm = jax.random.permutation(perm_key, target.num_data)
    results = []
    for j, size in enumerate(sizes):
        sub = dataclasses.replace(target, data=_take(target.data, perm[: int(size)]), num_data=int(size))
        results.append(
            _free_energy_of_target(
                sub,
                key=jax.random.fold_in(run_key, j),
                localization=localization,
                step_size=step_size,
                nbeta=None,
                num_temperatures=num_temperatures,
                min_nbeta=None,
                tail_tolerance=tail_tolerance,
                scale_step_size=scale_step_size,
                num_prior_samples=num_prior_samples,
                num_chains=num_chains,
                num_draws=num_draws,
                num_burnin=num_burnin,
                batch_size=None if batch_size is None else min(int(batch_size), int(size)),
                sampler=sampler,
                sampler_params=sampler_params,
                progress=progress,
                chunk_size=chunk_size,
                step_reference_nbeta=float(sizes[-1]),
            )
        )
    if reference == "posterior":
        reference_loss = [r.mean_nloss[-1] / r.num_data for r in results]  # E_1[L_n]: the top temperature is n
        stds = [r.kl_divergence_std for r in results]
    else:
        reference_loss = [r.init_loss for r in results]
        stds = [r.free_energy_std for r in results]
    fit = fit_free_energy_expansion(
        sizes,
        [r.free_energy for r in results],
        reference_loss,
        stds,
        llc=llc,
        inverse_log_term=inverse_log_term,
    )
    fit.reference = reference
    fit.results = results
    fit.subsample_indices = np.asarray(perm)
    return fit
