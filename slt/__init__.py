"""slt: singular learning theory in JAX.

Local learning coefficients of Flax models (and plain JAX losses) with jitted multi-chain SGLD,
closed-form learning coefficients to validate them against, and reference models.
"""

from __future__ import annotations

from slt import callbacks, diagnostics, dynamics, ground_truth, losses, models, observables, samplers, theory
from slt._src.components import Selector, components, head_mask
from slt._src.driver import Run, run_chains, sample
from slt._src.results import load
from slt.calibration import CalibrationResult, CalibrationSweep, calibrate
from slt.comparison import ModelComparison, compare_models
from slt.free_energy import (
    LambdaFit,
    LearningCoefficientResult,
    LocalFreeEnergyResult,
    MultiplicityResult,
    MultiTemperatureResult,
    WBICResult,
    fit_free_energy_expansion,
    fit_llc_temperatures,
    fit_multiplicity,
    learning_coefficient,
    llc_multitemperature,
    local_free_energy,
    wbic,
)
from slt.influence import BIFResult, SusceptibilityResult, bif, susceptibilities
from slt.llc import LLCResult, SamplingWarning, estimate_llc
from slt.posterior import LocalPosterior, default_nbeta
from slt.targets import Target

__version__ = "0.1.0"

__all__ = [
    "LambdaFit",
    "LearningCoefficientResult",
    "fit_llc_temperatures",
    "learning_coefficient",
    "LocalFreeEnergyResult",
    "MultiplicityResult",
    "MultiTemperatureResult",
    "WBICResult",
    "fit_free_energy_expansion",
    "fit_multiplicity",
    "llc_multitemperature",
    "local_free_energy",
    "wbic",
    "CalibrationResult",
    "CalibrationSweep",
    "calibrate",
    "compare_models",
    "components",
    "head_mask",
    "Selector",
    "ModelComparison",
    "BIFResult",
    "SusceptibilityResult",
    "bif",
    "susceptibilities",
    "LLCResult",
    "LocalPosterior",
    "SamplingWarning",
    "Target",
    "callbacks",
    "default_nbeta",
    "diagnostics",
    "dynamics",
    "ground_truth",
    "estimate_llc",
    "load",
    "losses",
    "models",
    "run_chains",
    "Run",
    "sample",
    "observables",
    "samplers",
    "theory",
]
