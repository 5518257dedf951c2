r"""Is a trajectory's PCA picture one that a random walk would also draw? (the Lissajous diagnostic)

PCA of a random walk draws a very particular picture (Antognini & Sohl-Dickstein, "PCA of high dimensional
random walks with comparison to neural network training", NeurIPS 2018, arXiv 1806.08805; Shinn, "Phantom
oscillations in principal component analysis", PNAS 120(48), 2023). For a centred T-step walk with isotropic
increments in high dimension, the covariance over time is :math:`H L L^\top H` (L the cumulative-sum matrix,
H the centring), whose eigenvectors are exactly

.. math::

    \mathrm{PC}_k(t) \propto \cos\!\Big(\frac{\pi k (t + \tfrac12)}{T}\Big), \qquad
    \lambda_k \propto \frac{1}{4\sin^2(\pi k / 2T)}, \qquad
    \frac{\lambda_k}{\sum_j \lambda_j} \xrightarrow{T\to\infty} \frac{6}{\pi^2 k^2} = 0.608, 0.152, 0.068, \dots

Plotted against each other the components trace Lissajous figures: PC2 against PC1 is a parabola
(:math:`\cos 2\theta = 2\cos^2\theta - 1`) with its vertex in the middle of PC1's range, PC1 is a half cosine
and therefore *monotone in time*. Both of the signs that are read as stagewise development (Murfet: PC1 a
"developmental clock", the extremum of PC2 as a function of PC1 in the middle of development) are thus drawn
by a random walk too. :attr:`LissajousResult.developmental_clock` and
:attr:`LissajousResult.pc2_extremum_position` are reported, but the decision cannot rest on them; it rests
on a test against the whole random-walk picture, below.

The test
--------
*Null hypothesis*: the increments :math:`e_t = x_{t+1} - x_t` are independent and each is symmetric about
zero (:math:`e_t \overset{d}{=} -e_t`). Their law is otherwise free: any dimension, any anisotropy, heavy
tails, a step size that changes over time. Under this null, flipping the sign of each increment at random
(:math:`e_t \to \epsilon_t e_t`, :math:`\epsilon_t = \pm 1` fair coins) gives another draw of the same
walk. So the trajectory and ``num_surrogates`` sign-flipped copies of it are exchangeable, and the rank of the
trajectory's statistic among them is a randomization p-value that is exact at any sample size:
:math:`P(p \le \alpha) \le \alpha` (the sign-flip test; see Hemerik & Goeman, "Exact testing with random
permutations", TEST 27, 2018), whatever statistic is ranked. A path with stages is not like that: its
increments persist in one direction for a whole stage, and its sign-flipped copies do not.

*Statistic* (``test="persistence"``, the verdict). Persistence of the increments' directions, at several
time scales. With :math:`c_{st} = \cos\angle(e_s, e_t)` (a zero increment has cosine 0 with everything) and
for a window length h,

.. math::

    Q_h = \sum_{|s-t| \ge 2} K^h_{st}\, c_{st}, \qquad K^h_{st} = \#\{\text{windows of } h
    \text{ consecutive increments holding both } s \text{ and } t\},

the cross terms of :math:`\sum_{\text{windows}} \lVert \sum_{t \in \text{window}} e_t/\lVert e_t\rVert
\rVert^2`: a variance ratio (Lo & MacKinlay, Rev. Financial Studies 1, 1988; calibrated by the wild, i.e.
sign-flip, bootstrap as in Kim, Economics Letters 92, 2006) on unit increments. Under sign flips its mean is 0
and its variance exactly :math:`2\sum_{s \ne t} (K^h_{st} c_{st})^2`, which the flips leave unchanged, so
:math:`z_h = Q_h / \mathrm{sd}` standardizes every surrogate alike. Lag 1 is left out of :math:`Q_h`
because position (measurement) noise makes successive increments anti-correlated; it enters on its own as
the *roughness* :math:`z_{\mathrm{rough}} = -\sum_{|s-t|=1} c_{st} / \mathrm{sd}`, large when the
trajectory is a smooth path plus noise (whose increments alternate) rather than a walk. The statistic is
:math:`S = \max(z_3, z_4, z_8, \dots, z_{T-1}, z_{\mathrm{rough}})` (scales 3, then powers of two, then the
whole trajectory), its p-value :math:`(1 + \#\{b : S_b \ge S_0\}) / (B + 1)`.

Why directions and not the increments themselves: a stage that is crossed quickly has large increments, and
with raw inner products those few increments dominate both the statistic and its null variance, so a path
with stages of unequal speed (training: fast transitions between slow plateaus) looks like a walk with a few
large steps. Unit increments weigh every checkpoint alike. For a random walk
:math:`E\, c_{st} = 0` at every lag whatever the tails of the steps; a piecewise-linear path has
:math:`c_{st} \approx 1` within a stage.

*The Lissajous statistic* (``test="lissajous"``, the verdict before; still computed on the same surrogates
and returned as :attr:`LissajousResult.lissajous_statistic` / ``lissajous_p_value``). For each of the B + 1
walks take the top K components and compute :math:`3K + 1` features of its PCA picture (3K when K is the
increments' rank, the tail then being empty):

* shape misfit :math:`1 - |\rho_k|`, :math:`\rho_k` the correlation of :math:`\mathrm{PC}_k(t)` with
  :math:`\cos(\pi k (t+\frac12)/T)`;
* spectrum deviation :math:`\sqrt{r_k} - \sqrt{q_k}` of each explained-variance ratio :math:`r_k` from the
  Lissajous value :math:`q_k` (exact at finite T), and the same for the variance beyond the K-th component;
* texture :math:`\log(\sum_t (\Delta^2 u_k)^2 / \sum_t (\Delta u_k)^2)` of each unit-norm score curve
  :math:`u_k`.

Each feature is standardized by the median and MAD over all B + 1 walks, shape misfits count only when worse
than typical, and the statistic is the root-mean-square of the standardized features.

*Error rates* (benchmarks/random_walk_test.py, RESULTS.md; fresh simulations, not those used to choose the
statistic). False-positive rate: at most ``alpha`` by exchangeability for any walk satisfying the null;
measured at the defaults on 500 random walks per increment law (T 200–400 checkpoints, D 500–3000
dimensions): Gaussian, Student-t(3) and Student-t(2) all within their binomial intervals around 5 %.
Power on piecewise-linear paths through 3–5 Gaussian waypoints (same T and D): the persistence test rejects
all of them (200 per cell) with position noise up to 10 % of a segment's length, as the Lissajous
statistic does; the two part only when the stages are seen through a random walk several segment lengths
long (SGD-like diffusion): at these sizes they are then indistinguishable on the same paths, while on shorter
trajectories (T = 80, D = 200, diffusion of 2.5 segment lengths) the persistence test rejects 67.5 % of 200
paths against 38.5 %. The DLN training run of benchmarks/dln_stages.py (three fast transitions between slow
plateaus) gets p = 0.005, the smallest possible at B = 199, against 0.050 for the Lissajous statistic.
The numbers per setting are in RESULTS.md. Where both fail: a path whose stages are buried in a random walk
of larger extent is, over most of its increments, a random walk.

*What it does not cover*. Increments with a mean (a drift) violate the null, so a drifting random walk is
judged not random-walk-like: its PCA picture is dominated by the drift, not by the walk. A strongly skewed
increment law makes sign flips change the law; the test is then approximate. Observations of a walk with
added measurement noise are not a random walk at the finest scale (the roughness picks this up); subsample
(``max_points``) so that the walk's steps dominate the noise.

Cost: the persistence test is :math:`O(T^2 \min(T, D) + B\,T^2 \log T)`; the Lissajous statistic needs the
PCA of every surrogate, about :math:`O(B T^2 \min(T, D))`, and dominates. Trajectories longer than
``max_points`` are subsampled with a uniform stride first (a subsampled random walk is again a random walk).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from slt._src import validate
from slt._src.results import Result
from slt.plotting import _pyplot

__all__ = ["LissajousResult", "lissajous_diagnostic", "random_walk_pca_ratios"]

_CLOCK_SPEARMAN = 0.9  # |Spearman rho| of PC1 vs time above which PC1 counts as a "developmental clock"
_MIN_SCALE = 1e-7  # floor on a feature's MAD (features are O(0.01-1); rounding noise is far below)
_SUBSPACE_EXTRA = 8  # extra vectors carried by the subspace iteration beyond the K wanted
_SUBSPACE_ITERS = 6
_TESTS = ("persistence", "lissajous")


def random_walk_pca_ratios(num_points: int) -> np.ndarray:
    r"""Explained-variance ratios of all :math:`T - 1` components of a T-point random walk (its PCA limit).

    :math:`q_k = \lambda_k / \sum_j \lambda_j` with :math:`\lambda_k = 1 / (4 \sin^2(\pi k / 2T))`, the
    eigenvalues of :math:`H L L^\top H`; :math:`q_k \to 6 / (\pi^2 k^2)` as :math:`T \to \infty`.

    Example:
        >>> import numpy as np
        >>> from slt.dynamics import random_walk_pca_ratios
        >>> q = random_walk_pca_ratios(1000)
        >>> q.shape, bool(np.isclose(q.sum(), 1.0))
        ((999,), True)
        >>> bool(np.allclose(q[:3], 6 / (np.pi**2 * np.arange(1, 4) ** 2), atol=1e-4))  # 0.608, 0.152, 0.068
        True
    """
    t = validate.positive_int(num_points, "num_points")
    if t < 2:
        raise ValueError(f"`num_points` must be at least 2; got {num_points!r}.")
    lam = 1.0 / (4.0 * np.sin(np.pi * np.arange(1, t) / (2 * t)) ** 2)
    return lam / lam.sum()


def _cosines(num_points: int, k: int) -> np.ndarray:
    """(k, T) unit-norm cos(pi j (t + 1/2) / T), j = 1..k."""
    t = np.arange(num_points)
    c = np.cos(np.pi * np.arange(1, k + 1)[:, None] * (t[None, :] + 0.5) / num_points)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


# ------------------------------------------------------------------------------------------- result
@dataclasses.dataclass
class LissajousResult(Result):
    """Result of :func:`lissajous_diagnostic`. T = points used (after subsampling), K = components compared.

    Attributes:
        random_walk_like: True when the test does not reject "independent symmetric increments" at level
            ``alpha`` (``p_value > alpha``): the PCA picture is one a random walk would also draw, so its
            turns and extrema are no evidence of stages.
        statistic: S of the trajectory under the test that gives the verdict (``test``): the largest
            standardized persistence (``"persistence"``) or the RMS of the standardized PCA-picture features
            (``"lissajous"``); see the module docstring.
        threshold: the ``1 - alpha`` quantile of the surrogates' statistics.
        p_value: randomization p-value, :math:`(1 + \\#\\{S_b \\ge S\\}) / (B + 1)`.
        alpha: the level.
        explained_variance_ratio: (K,) the trajectory's ratios.
        null_explained_variance_ratio: (K,) the random-walk (Lissajous) ratios at this T
            (:func:`random_walk_pca_ratios`; → 6/(π²k²)).
        surrogate_explained_variance_ratio: (B, K) the sign-flipped walks' ratios.
        cosine_correlations: (K,) :math:`|\\rho_k|`, correlation of PC k with cos(πk(t+½)/T).
        surrogate_cosine_correlations: (B, K) the same for the surrogates.
        components: (T, K) the trajectory's PC scores, each signed to correlate positively with its cosine.
        developmental_clock: whether PC1 is monotone in time, robustly: ``|pc1_spearman| ≥ 0.9``. A random
            walk's PC1 is a half cosine, so this is True for random walks as well.
        pc1_spearman: Spearman rank correlation of PC1 with time.
        pc2_extremum_position: where PC2's extremum falls along PC1, as a fraction of PC1's range (0 = the
            PC1 end where development starts, 1 = where it ends); the extremum is the point of PC2 farthest
            from the mean of its two end values (the vertex of the U). A random walk puts it at about 0.5.
            NaN if K < 2.
        pc2_extremum_time: the same point as a fraction of the time span.
        null_statistics: (B,) the surrogates' statistics.
        num_surrogates, n_components, stride: settings used (``stride``: the subsampling step).
        test: which statistic gives the verdict, ``"persistence"`` (default) or ``"lissajous"``.
        persistence_statistic, persistence_p_value: the persistence test's S and p-value (both tests are
            always computed, on the same sign flips).
        persistence_z: (H,) the trajectory's standardized persistence :math:`z_h` at each window length.
        persistence_scales: (H,) the window lengths h (in increments).
        roughness_z: the trajectory's standardized roughness (minus the lag-1 cosines).
        persistence_null_statistics: (B,) the surrogates' persistence statistics.
        lissajous_statistic, lissajous_p_value, lissajous_null_statistics: the same for the Lissajous
            statistic (the verdict before; kept for comparison).

    Example:
        >>> import numpy as np
        >>> from slt.dynamics import lissajous_diagnostic
        >>> rng = np.random.default_rng(0)
        >>> walk = np.cumsum(rng.normal(size=(60, 30)), axis=0)  # a random walk: 60 steps in 30 dimensions
        >>> res = lissajous_diagnostic(walk, num_surrogates=99)
        >>> res.components.shape, res.surrogate_explained_variance_ratio.shape, res.null_statistics.shape
        ((60, 5), (99, 5), (99,))
        >>> res.random_walk_like, res.developmental_clock  # a random walk's PC1 is monotone in time too
        (True, True)
    """

    random_walk_like: bool
    statistic: float
    threshold: float
    p_value: float
    alpha: float
    explained_variance_ratio: np.ndarray
    null_explained_variance_ratio: np.ndarray
    surrogate_explained_variance_ratio: np.ndarray
    cosine_correlations: np.ndarray
    surrogate_cosine_correlations: np.ndarray
    components: np.ndarray
    developmental_clock: bool
    pc1_spearman: float
    pc2_extremum_position: float
    pc2_extremum_time: float
    null_statistics: np.ndarray
    num_surrogates: int
    n_components: int
    stride: int
    test: str = "persistence"
    persistence_statistic: float = float("nan")
    persistence_p_value: float = float("nan")
    persistence_z: np.ndarray | None = None
    persistence_scales: np.ndarray | None = None
    roughness_z: float = float("nan")
    persistence_null_statistics: np.ndarray | None = None
    lissajous_statistic: float = float("nan")
    lissajous_p_value: float = float("nan")
    lissajous_null_statistics: np.ndarray | None = None

    def __repr__(self) -> str:
        verdict = "random-walk-like" if self.random_walk_like else "NOT random-walk-like"
        return (
            f"LissajousResult({verdict}: S = {self.statistic:.3g} vs threshold {self.threshold:.3g}, "
            f"p = {self.p_value:.3g}, alpha = {self.alpha}, EVR = {np.round(self.explained_variance_ratio, 3)}, "
            f"|cos corr| = {np.round(self.cosine_correlations, 3)})"
        )

    def plot(self):
        """PC curves against the random-walk cosines, the variance spectrum against the Lissajous one, PC2
        against PC1 coloured by time, and the surrogates' statistics; returns the figure."""
        plt = _pyplot()
        fig, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
        ax_pc, ax_spec, ax_liss, ax_null = axes.ravel()
        num_points, k = self.components.shape
        t = np.arange(num_points)
        cos = _cosines(num_points, k) * math.sqrt(num_points)
        for j in range(k):
            pc = self.components[:, j]
            pc = pc / max(float(np.sqrt(np.mean(pc**2))), 1e-300)
            (line,) = ax_pc.plot(t, pc - 3 * j, lw=1.3, label=f"PC{j + 1} (|ρ| = {self.cosine_correlations[j]:.2f})")
            ax_pc.plot(t, cos[j] - 3 * j, ls="--", lw=1, color=line.get_color())
        ax_pc.set_xlabel("checkpoint" + (f" (every {self.stride})" if self.stride > 1 else ""))
        ax_pc.set_yticks([])
        ax_pc.set_title("PC scores (solid) vs random-walk cosines (dashed)")
        ax_pc.legend(fontsize=8, loc="upper right")

        ks = np.arange(1, k + 1)
        lo, hi = np.quantile(self.surrogate_explained_variance_ratio, [0.05, 0.95], axis=0)
        ax_spec.fill_between(ks, lo, hi, color="tab:orange", alpha=0.25, label="sign-flipped walks, 5–95%")
        ax_spec.plot(ks, self.null_explained_variance_ratio, "s--", color="tab:orange", label="random walk, 6/(π²k²)")
        ax_spec.plot(ks, self.explained_variance_ratio, "o-", color="tab:blue", label="trajectory")
        ax_spec.set_yscale("log")
        ax_spec.set_xticks(ks)
        ax_spec.set_xlabel("component k")
        ax_spec.set_ylabel("explained variance ratio")
        ax_spec.legend(fontsize=8)

        if k >= 2:
            sc = ax_liss.scatter(self.components[:, 0], self.components[:, 1], c=t, cmap="viridis", s=12)
            ax_liss.plot(self.components[:, 0], self.components[:, 1], color="0.7", lw=0.8, zorder=0)
            fig.colorbar(sc, ax=ax_liss, label="checkpoint")
            ax_liss.set_xlabel("PC1")
            ax_liss.set_ylabel("PC2")
            clock = "yes" if self.developmental_clock else "no"
            ax_liss.set_title(
                f"PC1 clock: {clock} (Spearman {self.pc1_spearman:.2f}); PC2 extremum at "
                f"{self.pc2_extremum_position:.2f} of PC1",
                fontsize=9,
            )
        else:
            ax_liss.set_axis_off()

        ax_null.hist(self.null_statistics, bins=30, color="tab:orange", alpha=0.6, label="sign-flipped walks")
        ax_null.axvline(self.threshold, color="k", ls="--", label=f"threshold (α = {self.alpha})")
        ax_null.axvline(self.statistic, color="tab:blue", lw=2, label="trajectory")
        verdict = "random-walk-like" if self.random_walk_like else "not random-walk-like"
        ax_null.set_title(f"S = {self.statistic:.3g}, p = {self.p_value:.3g}: {verdict}", fontsize=10)
        ax_null.set_xlabel("statistic S")
        ax_null.legend(fontsize=8)
        return fig


# ------------------------------------------------------------------------------------------- compute
def _increment_factor(x: np.ndarray) -> np.ndarray:
    """F (T-1, r) with F F^T = E E^T for the increments E, r its numerical rank (r <= min(T-1, D))."""
    e = np.diff(x, axis=0)
    if e.shape[1] > e.shape[0]:
        lam, u = np.linalg.eigh(e @ e.T)
        lam, u = lam[::-1], u[:, ::-1]
        keep = lam > max(float(lam[0]), 0.0) * 1e-12
        return u[:, keep] * np.sqrt(lam[keep])
    u, s, _ = np.linalg.svd(e, full_matrices=False)
    keep = s > float(s[0]) * 1e-6 if s.size else s > 0
    return u[:, keep] * s[keep]


def _top_eigen(walks: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k eigenpairs of each walk's time Gram W W^T, and its trace.

    walks: (c, T, r) centred. Returns eigenvalues (c, k) descending, eigenvectors (c, T, k), traces (c,).
    """
    c, num_points, r = walks.shape
    total = np.einsum("ctr,ctr->c", walks, walks)
    p = min(k + _SUBSPACE_EXTRA, num_points - 1)
    if r <= p or num_points <= 2 * p:
        u, s, _ = np.linalg.svd(walks, full_matrices=False)
        return s[:, :k] ** 2, u[:, :, :k], total
    # Block subspace iteration, started from the random-walk eigenvectors (the cosines); the spectrum decays
    # like 1/k^2, so the top k converge by (k / (p + 1))^2 per iteration.
    gram = walks @ walks.transpose(0, 2, 1)
    q = np.broadcast_to(_cosines(num_points, p).T, (c, num_points, p)).copy()
    for _ in range(_SUBSPACE_ITERS):
        q, _ = np.linalg.qr(gram @ q)
    small = q.transpose(0, 2, 1) @ gram @ q
    lam, v = np.linalg.eigh(small)
    lam, v = lam[:, ::-1], v[:, :, ::-1]
    return np.maximum(lam[:, :k], 0.0), (q @ v)[:, :, :k], total


def _features(lam, vecs, total, q, cosines, with_tail):
    """The (c, 3K[+1]) features of each walk's PCA picture and its (c, K) ratios and |cosine correlations|.

    The tail (variance beyond the K-th component) is left out when K is the increments' rank: it is then zero
    up to rounding for every walk, and its rounding noise must not enter the statistic.
    """
    ratio = lam / total[:, None]
    rho = np.abs(np.einsum("ctk,kt->ck", vecs, cosines))
    spectrum = np.sqrt(ratio) - np.sqrt(q)
    if with_tail:
        tail = np.sqrt(np.clip(1.0 - ratio.sum(1), 0.0, None)) - math.sqrt(max(1.0 - q.sum(), 0.0))
        spectrum = np.concatenate([spectrum, tail[:, None]], axis=1)
    d1 = np.sum(np.diff(vecs, axis=1) ** 2, axis=1)
    d2 = np.sum(np.diff(vecs, n=2, axis=1) ** 2, axis=1)
    texture = np.log(d2 + 1e-300) - np.log(d1 + 1e-300)
    return np.concatenate([1.0 - rho, spectrum, texture], axis=1), ratio, rho


def _statistics(features: np.ndarray, k: int) -> np.ndarray:
    """RMS of robustly standardized features; shape misfits (the first k) count only upward."""
    med = np.median(features, axis=0)
    mad = 1.4826 * np.median(np.abs(features - med), axis=0)
    scale = np.maximum(mad, _MIN_SCALE)
    z = (features - med) / scale
    z[:, :k] = np.maximum(z[:, :k], 0.0)
    return np.sqrt(np.mean(z**2, axis=1))


def _spearman(a: np.ndarray) -> float:
    ranks = np.argsort(np.argsort(a)).astype(np.float64)
    t = np.arange(a.shape[0], dtype=np.float64)
    ranks -= ranks.mean()
    t -= t.mean()
    return float(ranks @ t / math.sqrt((ranks @ ranks) * (t @ t)))


def _persistence_scales(num_increments: int) -> np.ndarray:
    """Window lengths h of the persistence components: 3, then powers of two from 4 below n, then n."""
    n = num_increments
    if n < 3:
        return np.zeros(0, dtype=np.int64)
    hs = [3] + [1 << j for j in range(2, max(2, int(math.log2(n)) + 1)) if (1 << j) < n] + [n]
    return np.unique(np.asarray(hs, dtype=np.int64))


def _persistence_z(factor: np.ndarray, signs: np.ndarray, scales: np.ndarray) -> np.ndarray:
    r"""(c, H + 1) standardized persistence of each sign-flipped walk: H window scales, then roughness.

    For window length h, :math:`Q_h(\epsilon) = \sum_{|s-t| \ge 2} K^h_{st} c_{st} \epsilon_s \epsilon_t`
    with :math:`c_{st}` the cosine of the angle between increments s and t and :math:`K^h_{st}` the number of
    length-h windows holding both; the last column is the roughness
    :math:`-\sum_{|s-t| = 1} c_{st} \epsilon_s\epsilon_t`. Each is
    divided by its exact sign-flip standard deviation :math:`\sqrt{2 \sum A_{st}^2}`, which the flips leave
    unchanged (so every walk is standardized alike and exchangeability is kept).
    """
    norms = np.linalg.norm(factor, axis=1, keepdims=True)
    unit = factor / np.where(norms > 0, norms, 1.0)  # rows: the increments' directions (zero steps stay 0)
    gram = unit @ unit.T  # cosines of the increments' angles
    n = gram.shape[0]
    idx = np.arange(n)
    lo_idx, hi_idx = np.minimum.outer(idx, idx), np.maximum.outer(idx, idx)
    lag = hi_idx - lo_idx
    kernels = []
    for h in scales:
        count = np.minimum(lo_idx, n - h) - np.maximum(0, hi_idx - h + 1) + 1
        kernels.append(np.where(lag >= 2, np.maximum(count, 0), 0).astype(np.float64))
    kernels.append(-(lag == 1).astype(np.float64))
    out = np.empty((signs.shape[0], len(kernels)))
    for j, kern in enumerate(kernels):
        a = kern * gram
        sd = math.sqrt(2.0 * float(np.sum(a * a)))
        out[:, j] = np.einsum("bs,bs->b", signs @ a, signs) / sd if sd > 0 else 0.0
    return out


def _pc2_extremum(pc1: np.ndarray, pc2: np.ndarray) -> tuple[float, float]:
    """Where PC2's extremum (the point farthest from the mean of its end values) falls: as a fraction of
    PC1's range, measured from the PC1 end where the trajectory starts, and as a fraction of the time span."""
    t_star = int(np.argmax(np.abs(pc2 - 0.5 * (pc2[0] + pc2[-1]))))
    span = max(float(np.ptp(pc1)), 1e-300)
    along = (pc1[t_star] - pc1.min()) / span if pc1[-1] >= pc1[0] else (pc1.max() - pc1[t_star]) / span
    return float(along), t_star / (pc1.shape[0] - 1)


def _flip_signs(seed: int, num_surrogates: int, num_increments: int) -> np.ndarray:
    """(B + 1, n) signs: a row of ones (the trajectory itself), then B rows of fair coin flips."""
    rng = np.random.default_rng(seed)
    flips = rng.choice([-1.0, 1.0], size=(num_surrogates, num_increments))
    return np.concatenate([np.ones((1, num_increments)), flips])


def _persistence_p_value(trajectory: Any, *, num_surrogates: int = 199, seed: int = 0, max_points: int = 200):
    """The persistence test alone (no PCA), as :func:`lissajous_diagnostic` runs it: (statistic, p-value).

    Same subsampling and the same sign flips, so the p-value equals ``lissajous_diagnostic(...).p_value``;
    for benchmarks that need thousands of tests (the PCA of every surrogate dominates the full diagnostic).
    """
    x = np.asarray(trajectory, dtype=np.float64)
    x = x.reshape(x.shape[0], -1)
    x = x[:: max(1, math.ceil(x.shape[0] / max_points))]
    factor = _increment_factor(x)
    signs = _flip_signs(seed, num_surrogates, x.shape[0] - 1)
    stat = _persistence_z(factor, signs, _persistence_scales(x.shape[0] - 1)).max(axis=1)
    return float(stat[0]), float((1 + np.sum(stat[1:] >= stat[0])) / (num_surrogates + 1))


def lissajous_diagnostic(
    trajectory: Any,
    *,
    n_components: int = 5,
    alpha: float = 0.05,
    num_surrogates: int = 199,
    seed: int = 0,
    max_points: int = 200,
    test: str = "persistence",
) -> LissajousResult:
    """Test whether a trajectory's PCA picture is one a random walk would also draw.

    A sign-flip randomization test of "independent, symmetric increments". The verdict's statistic is the
    persistence of the increments' directions over windows of 3 to T checkpoints (cosines of lagged
    increments, a variance ratio; ~0 for a random walk whatever its step law, ~1 within a stage), with the
    roughness of the path beside it; the PCA picture's distance from the random-walk one (PC shapes against
    cos(πk(t+½)/T), the spectrum against 6/(π²k²), the texture of the PC curves) is computed on the same
    surrogates and reported. The module docstring gives the theory, the calibration and the error rates.
    False-positive rate (random walks judged not random-walk-like): at most ``alpha``, exactly, for any walk
    with independent symmetric increments.

    Args:
        trajectory: (T, ...) positions over time (checkpoints × parameters, or × outputs on a probe set);
            trailing axes are flattened. T ≥ 8.
        n_components: number K of components compared (capped at the increments' rank and T - 2).
        alpha: level of the test, in (0, 1).
        num_surrogates: number B of sign-flipped walks; the p-value's resolution is 1 / (B + 1), so B must
            be at least 1/alpha - 1.
        seed: seed of the sign flips (the result is deterministic given it).
        max_points: longer trajectories are subsampled with a uniform stride to at most this many points.
        test: the statistic behind the verdict: ``"persistence"`` (multi-scale persistence of the increments'
            directions; the more powerful, and the default) or ``"lissajous"`` (the PCA-picture features).
            Both are computed and returned either way.

    Returns:
        :class:`LissajousResult`.

    Example:
        >>> import numpy as np
        >>> from slt.dynamics import lissajous_diagnostic
        >>> rng = np.random.default_rng(0)
        >>> walk = np.cumsum(rng.normal(size=(60, 30)), axis=0)  # a random walk: 60 steps in 30 dimensions
        >>> res = lissajous_diagnostic(walk, num_surrogates=99)
        >>> res.random_walk_like, bool(res.p_value > res.alpha)
        (True, True)
        >>> w0, w1, w2 = rng.normal(size=(3, 30))
        >>> seg = np.linspace(0, 1, 30)[:, None]
        >>> stages = np.concatenate([w0 + seg * (w1 - w0), w1 + seg[1:] * (w2 - w1)])  # two straight stages
        >>> lissajous_diagnostic(stages + 0.01 * rng.normal(size=stages.shape), num_surrogates=99).random_walk_like
        False
    """
    x = np.asarray(trajectory, dtype=np.float64)
    if x.ndim < 2:
        raise ValueError(f"`trajectory` must be shaped (num_points, dims...); got shape {x.shape}.")
    x = x.reshape(x.shape[0], -1)
    if not np.all(np.isfinite(x)):
        raise ValueError("`trajectory` contains NaN or infinite values.")
    k_wanted = validate.positive_int(n_components, "n_components")
    b = validate.positive_int(num_surrogates, "num_surrogates")
    max_points = validate.positive_int(max_points, "max_points")
    alpha = validate.probability(alpha, "alpha")
    if test not in _TESTS:
        raise ValueError(f"`test` must be one of {_TESTS}; got {test!r}.")
    if (b + 1) * alpha < 1.0:
        raise ValueError(
            f"`num_surrogates` = {b} cannot reach level alpha = {alpha}: the smallest p-value is 1/(B + 1); "
            f"use num_surrogates >= {math.ceil(1 / alpha) - 1}."
        )
    if max_points < 8:
        raise ValueError(f"`max_points` must be at least 8; got {max_points}.")
    stride = max(1, math.ceil(x.shape[0] / max_points))
    x = x[::stride]
    num_points = x.shape[0]
    if num_points < 8:
        raise ValueError(f"`trajectory` needs at least 8 points (after subsampling); got {num_points}.")

    factor = _increment_factor(x)
    if factor.shape[1] == 0:
        raise ValueError("`trajectory` does not move: all its increments are zero.")
    k = min(k_wanted, factor.shape[1], num_points - 2)
    q = random_walk_pca_ratios(num_points)[:k]
    cosines = _cosines(num_points, k)
    with_tail = k < factor.shape[1]

    signs = _flip_signs(seed, b, num_points - 1)
    per_chunk = max(1, (1 << 23) // (num_points * max(num_points, factor.shape[1])))
    feats, ratios, rhos, first_vecs, first_lam = [], [], [], None, None
    for start in range(0, b + 1, per_chunk):
        s = signs[start : start + per_chunk]
        steps = np.cumsum(s[:, :, None] * factor, axis=1)
        walks = np.concatenate([np.zeros((s.shape[0], 1, factor.shape[1])), steps], axis=1)
        walks -= walks.mean(axis=1, keepdims=True)
        lam, vecs, total = _top_eigen(walks, k)
        f, ratio, rho = _features(lam, vecs, total, q, cosines, with_tail)
        feats.append(f)
        ratios.append(ratio)
        rhos.append(rho)
        if start == 0:
            first_vecs, first_lam = vecs[0], lam[0]
    features = np.concatenate(feats)
    ratios = np.concatenate(ratios)
    rhos = np.concatenate(rhos)

    stats = _statistics(features, k)
    liss_statistic, liss_null = float(stats[0]), stats[1:]
    liss_p = float((1 + np.sum(liss_null >= liss_statistic)) / (b + 1))
    scales = _persistence_scales(num_points - 1)
    z = _persistence_z(factor, signs, scales)
    pers = z.max(axis=1)
    pers_statistic, pers_null = float(pers[0]), pers[1:]
    pers_p = float((1 + np.sum(pers_null >= pers_statistic)) / (b + 1))
    if test == "persistence":
        statistic, null, p_value = pers_statistic, pers_null, pers_p
    else:
        statistic, null, p_value = liss_statistic, liss_null, liss_p
    threshold = float(np.quantile(null, 1.0 - alpha))

    signs_to_cos = np.where(np.einsum("tk,kt->k", first_vecs, cosines) < 0, -1.0, 1.0)
    components = first_vecs * signs_to_cos * np.sqrt(first_lam)
    pc1 = components[:, 0]
    spearman = _spearman(pc1)
    if k >= 2:
        pc2_position, pc2_time = _pc2_extremum(pc1, components[:, 1])
    else:
        pc2_position = pc2_time = float("nan")

    return LissajousResult(
        random_walk_like=bool(p_value > alpha),
        statistic=statistic,
        threshold=threshold,
        p_value=p_value,
        alpha=alpha,
        explained_variance_ratio=ratios[0],
        null_explained_variance_ratio=q,
        surrogate_explained_variance_ratio=ratios[1:],
        cosine_correlations=rhos[0],
        surrogate_cosine_correlations=rhos[1:],
        components=components,
        developmental_clock=bool(abs(spearman) >= _CLOCK_SPEARMAN),
        pc1_spearman=spearman,
        pc2_extremum_position=pc2_position,
        pc2_extremum_time=pc2_time,
        null_statistics=null,
        num_surrogates=b,
        n_components=k,
        stride=stride,
        test=test,
        persistence_statistic=pers_statistic,
        persistence_p_value=pers_p,
        persistence_z=z[0, :-1],
        persistence_scales=scales,
        roughness_z=float(z[0, -1]),
        persistence_null_statistics=pers_null,
        lissajous_statistic=liss_statistic,
        lissajous_p_value=liss_p,
        lissajous_null_statistics=liss_null,
    )
