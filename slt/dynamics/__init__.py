"""Stagewise development: essential dynamics, the random-walk (Lissajous) check, and stage boundaries.

* :func:`llc_trajectory` — one LLC estimate per training checkpoint, checkpoints as a vmapped axis, with
  the weight norm (:func:`weight_norms`) and the effective step beside it.
* :func:`essential_dynamics` — PCA of model outputs on a fixed probe set across checkpoints.
* :func:`lissajous_diagnostic` — is that PCA picture one a random walk would also draw?
* :func:`detect_stages` — stage boundaries (turning points, plateau starts and ends) of a scalar curve
  such as the LLC or the loss over training.
* :func:`detect_turns` — sharp turns and cusps of a PC curve, from osculating circles.

Hoogland et al., arXiv 2402.02364; Antognini & Sohl-Dickstein, arXiv 1806.08805.
"""

from __future__ import annotations

from slt.dynamics._geometry import gaussian_smooth, osculating_curvature
from slt.dynamics.essential import EssentialDynamics, essential_dynamics
from slt.dynamics.lissajous import LissajousResult, lissajous_diagnostic, random_walk_pca_ratios
from slt.dynamics.stages import StageResult, TurnResult, detect_stages, detect_turns
from slt.dynamics.trajectory import LLCTrajectory, llc_trajectory, load_checkpoints, weight_norms

__all__ = [
    "EssentialDynamics",
    "LLCTrajectory",
    "LissajousResult",
    "StageResult",
    "TurnResult",
    "detect_stages",
    "detect_turns",
    "essential_dynamics",
    "gaussian_smooth",
    "lissajous_diagnostic",
    "llc_trajectory",
    "load_checkpoints",
    "osculating_curvature",
    "random_walk_pca_ratios",
    "weight_norms",
]
