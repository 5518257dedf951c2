r"""Essential dynamics: PCA of model outputs on a fixed probe set, stacked across checkpoints.

Let :math:`f_{w_t}(x_1), \dots, f_{w_t}(x_m)` be a model's outputs on a fixed probe set at checkpoint
:math:`t = 0, \dots, T-1`, flattened into a row :math:`y_t \in \mathbb R^F`. Centre the rows over checkpoints,
:math:`\bar Y = Y - \mathbf 1 \bar y^\top`, and take the thin SVD :math:`\bar Y = U S V^\top`. Then

* the *components* (PC scores) are :math:`U_{:, :k} S_{:k}` — the developmental trajectory seen in the
  :math:`k` directions of output space along which it moves most;
* the *loadings* are :math:`V_{:, :k}^\top` (unit vectors in output space);
* the explained-variance ratios are :math:`s_i^2 / \sum_j s_j^2`.

Hoogland et al., "Loss landscape degeneracy drives stagewise development in transformers" (arXiv 2402.02364,
TMLR 2025) read stage boundaries off this low-dimensional curve: its turning points and cusps, located with
osculating circles (:func:`osculating_curvature`, :func:`slt.dynamics.detect_turns`). Carroll et al.
(arXiv 2501.17745) do the same on a joint trajectory. Before reading stages into such a curve, check that it
is not the Lissajous figure any random walk draws under PCA: :func:`slt.dynamics.lissajous_diagnostic`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from slt._src import validate
from slt._src.results import Result
from slt.dynamics._geometry import gaussian_smooth, osculating_curvature
from slt.dynamics.stages import detect_turns
from slt.plotting import _pyplot

__all__ = ["EssentialDynamics", "essential_dynamics"]


# ------------------------------------------------------------------------------------------- result
@dataclasses.dataclass
class EssentialDynamics(Result):
    """Result of :func:`essential_dynamics`. T = number of checkpoints, k = components kept, F = features.

    Attributes:
        components: (T, k) PC scores: the trajectory in the top-k principal directions. Each component's sign
            is chosen so that its score at the last checkpoint is at least its score at the first (PC1 then
            runs forward in time); PCA itself leaves the sign arbitrary.
        explained_variance_ratio: (k,) share of the total variance (over checkpoints) each component carries.
        explained_variance: (k,) variance of each component's scores (ddof = 1).
        singular_values: (k,) the centred matrix's singular values.
        loadings: (k, F) unit principal directions in (flattened) output space.
        mean: (F,) the mean output over checkpoints (the centring).
        steps: (T,) training step of each checkpoint (``0..T-1`` if not given).
        smoothing: the Gaussian smoothing scale in checkpoints, or None.
        smoothed: (T, k) ``components`` smoothed with :func:`gaussian_smooth` at scale ``smoothing``; None
            without smoothing.
        output_shape: the trailing shape of one checkpoint's outputs (``loadings`` reshape to it).

    Example:
        >>> import numpy as np
        >>> from slt.dynamics import essential_dynamics
        >>> rng = np.random.default_rng(0)
        >>> w0, w1, w2 = rng.normal(size=(3, 30))  # outputs on a probe set of 30 at three waypoints
        >>> seg = np.linspace(0, 1, 30)[:, None]
        >>> outputs = np.concatenate([w0 + seg * (w1 - w0), w1 + seg[1:] * (w2 - w1)])  # two stages, 59 checkpoints
        >>> ed = essential_dynamics(outputs + 0.01 * rng.normal(size=outputs.shape), n_components=3, smoothing=2.0)
        >>> ed.n_components, ed.curve((0, 1)).shape, ed.mean.shape, ed.output_shape
        (3, (59, 2), (30,), (30,))
        >>> bool(ed.components[-1, 0] >= ed.components[0, 0])  # PC1 is signed to run forward in time
        True
    """

    components: np.ndarray
    explained_variance_ratio: np.ndarray
    explained_variance: np.ndarray
    singular_values: np.ndarray
    loadings: np.ndarray
    mean: np.ndarray
    steps: np.ndarray
    smoothing: float | None
    smoothed: np.ndarray | None
    output_shape: tuple[int, ...]

    @property
    def n_components(self) -> int:
        return int(self.components.shape[1])

    def curve(self, pcs: Sequence[int] = (0, 1), smoothed: bool = True) -> np.ndarray:
        """The (T, len(pcs)) curve of the chosen components (smoothed ones if available and asked for)."""
        pcs = tuple(int(i) for i in pcs)
        if not pcs or min(pcs) < 0 or max(pcs) >= self.n_components:
            raise ValueError(f"`pcs` must index components 0..{self.n_components - 1}; got {pcs}.")
        source = self.smoothed if (smoothed and self.smoothed is not None) else self.components
        return source[:, list(pcs)]

    def curvature(self, pcs: Sequence[int] = (0, 1), spacing: int = 1, smoothed: bool = True):
        """Osculating-circle curvature and turning angle along the PC curve ``pcs``.

        See :func:`osculating_curvature`; returns ``(curvature, angle)``, each (T,).
        """
        return osculating_curvature(self.curve(pcs, smoothed), spacing)

    def detect_turns(self, pcs: Sequence[int] = (0, 1), **kwargs):
        """Sharp turns and cusps of the raw PC curve ``pcs`` (:func:`slt.dynamics.detect_turns`)."""
        return detect_turns(self.components[:, list(pcs)], self.steps, **kwargs)

    def plot(self, pairs: Sequence[tuple[int, int]] = ((0, 1), (0, 2), (1, 2)), *, cmap: str = "viridis"):
        """PC pairs against each other, points coloured by training step; returns the figure.

        Pairs naming a component beyond ``n_components`` are skipped. The smoothed curve, if any, is drawn
        as a line over the raw scores.
        """
        plt = _pyplot()
        pairs = [tuple(p) for p in pairs if max(p) < self.n_components]
        if not pairs:
            raise ValueError(f"no pair in `pairs` is within the {self.n_components} components.")
        fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs) + 0.8, 4.0), constrained_layout=True)
        axes = np.atleast_1d(axes)
        for ax, (i, j) in zip(axes, pairs):
            ax.plot(self.components[:, i], self.components[:, j], color="0.8", lw=0.8, zorder=1)
            sc = ax.scatter(self.components[:, i], self.components[:, j], c=self.steps, cmap=cmap, s=14, zorder=2)
            if self.smoothed is not None:
                ax.plot(self.smoothed[:, i], self.smoothed[:, j], color="k", lw=1.2, zorder=3)
            ax.set_xlabel(f"PC{i + 1} ({100 * self.explained_variance_ratio[i]:.1f}%)")
            ax.set_ylabel(f"PC{j + 1} ({100 * self.explained_variance_ratio[j]:.1f}%)")
        fig.colorbar(sc, ax=list(axes), label="step")
        return fig


# ------------------------------------------------------------------------------------------- compute
def essential_dynamics(
    outputs: Any, *, n_components: int = 3, smoothing: float | None = None, steps: Any = None
) -> EssentialDynamics:
    r"""PCA of model outputs on a fixed probe set across checkpoints ("essential dynamics").

    Args:
        outputs: (T, ...) outputs of each of T checkpoints on the same probe inputs (numpy or JAX); all
            trailing axes are flattened into F features.
        n_components: number k of components to keep (capped at ``min(T, F)``).
        smoothing: if given, the standard deviation in checkpoints of a Gaussian local-linear smoother
            (:func:`gaussian_smooth`) applied to each component curve, stored in ``smoothed``.
        steps: (T,) training step of each checkpoint; defaults to ``0..T-1``. Only used to colour plots and to
            report positions.

    Returns:
        :class:`EssentialDynamics`.

    The SVD is of the (T, F) centred matrix, so it costs :math:`O(T^2 F)` for F ≥ T and needs nothing
    larger than the data itself.

    Example:
        >>> import numpy as np
        >>> from slt.dynamics import essential_dynamics
        >>> rng = np.random.default_rng(0)
        >>> w0, w1, w2 = rng.normal(size=(3, 30))  # outputs on a probe set of 30 at three waypoints
        >>> seg = np.linspace(0, 1, 30)[:, None]
        >>> outputs = np.concatenate([w0 + seg * (w1 - w0), w1 + seg[1:] * (w2 - w1)])  # two stages, 59 checkpoints
        >>> ed = essential_dynamics(outputs + 0.01 * rng.normal(size=outputs.shape), n_components=3, smoothing=2.0)
        >>> ed.components.shape, ed.loadings.shape, bool(ed.explained_variance_ratio[:2].sum() > 0.99)
        ((59, 3), (3, 30), True)
        >>> turns = ed.detect_turns().indices  # the stage boundary: the waypoint at checkpoint 29
        >>> len(turns), bool(abs(turns[0] - 29) <= 2)
        (1, True)
    """
    y = np.asarray(outputs, dtype=np.float64)
    if y.ndim < 2:
        raise ValueError(f"`outputs` must be shaped (num_checkpoints, ...) with features; got shape {y.shape}.")
    num_checkpoints = y.shape[0]
    if num_checkpoints < 3:
        raise ValueError(f"`outputs` needs at least 3 checkpoints; got {num_checkpoints}.")
    output_shape = tuple(y.shape[1:])
    y = y.reshape(num_checkpoints, -1)
    if not np.all(np.isfinite(y)):
        raise ValueError("`outputs` contains NaN or infinite values.")
    k = validate.positive_int(n_components, "n_components")
    smoothing = validate.positive_float(smoothing, "smoothing", allow_none=True)
    if steps is None:
        steps_arr = np.arange(num_checkpoints, dtype=np.float64)
    else:
        steps_arr = np.asarray(steps, dtype=np.float64).reshape(-1)
        if steps_arr.shape[0] != num_checkpoints:
            raise ValueError(
                f"`steps` must have one entry per checkpoint ({num_checkpoints}); got {steps_arr.shape[0]}."
            )

    mean = y.mean(axis=0)
    centred = y - mean
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(k, s.shape[0])
    total = float(np.sum(s**2))
    if total <= 0.0:
        raise ValueError("`outputs` are identical at every checkpoint: there is no dynamics to analyse.")
    scores = u[:, :k] * s[:k]
    loadings = vt[:k]
    flip = np.where(scores[-1] < scores[0], -1.0, 1.0)
    scores = scores * flip
    loadings = loadings * flip[:, None]
    smoothed = gaussian_smooth(scores, smoothing) if smoothing is not None else None
    return EssentialDynamics(
        components=scores,
        explained_variance_ratio=s[:k] ** 2 / total,
        explained_variance=s[:k] ** 2 / (num_checkpoints - 1),
        singular_values=s[:k].copy(),
        loadings=loadings,
        mean=mean.reshape(output_shape),
        steps=steps_arr,
        smoothing=smoothing,
        smoothed=smoothed,
        output_shape=output_shape,
    )
