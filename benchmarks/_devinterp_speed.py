"""The devinterp 1.3.2 side of ``benchmarks/speed.py``: the same deep linear network, data, loss and SGLD.

Imported by ``speed.py`` only when torch and devinterp are importable, so that torch never enters the main
environment. devinterp lives in its own virtual environment (``.venv-devinterp``, see ``speed.py``).

The setup mirrors ``slt.estimate_llc`` on the benchmark workload:

* model: ``nn.Sequential`` of bias-free ``nn.Linear`` layers whose weights are w* (``params[l]`` is
  ``H_{l+1} × H_l``, which is torch's ``(out, in)`` layout);
* data: a ``TensorDataset`` of the same (x, y) in a shuffled ``DataLoader`` with the same batch size;
* loss: ``0.5 * sum over outputs of (y - f(x))², mean over the batch`` (``slt.models.dln_loss``);
* L_n(w*): the full-data loss, passed as ``init_loss`` (as slt computes it; devinterp's default takes
  it from ``num_chains`` minibatches, which shifts the LLC by about ±90 here);
* sampler: devinterp's ``SGLD`` with ``lr`` = ε, ``nbeta`` = nβ and ``localization`` = γ set explicitly
  (its update is the same as slt's: ``w -= lr/2 (nbeta ∇L_B + γ (w - w*))``, then ``+ sqrt(lr) N(0, I)``).
"""

from __future__ import annotations

import importlib.metadata
import time
import warnings

import numpy as np
import torch
from devinterp.optim.sgld import SGLD
from devinterp.slt.sampler import estimate_learning_coeff_with_summary
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["DevinterpRunner", "versions"]


def versions() -> dict[str, str]:
    return {"devinterp": importlib.metadata.version("devinterp"), "torch": torch.__version__}


def _criterion(y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.sum((y_pred - y) ** 2, dim=-1).mean()


def _evaluate(model: nn.Module, data):
    x, y = data
    y_pred = model(x)
    return _criterion(y_pred, y), {"output": y_pred}


class DevinterpRunner:
    """Holds the torch model and loader; ``run()`` does one full ``estimate_learning_coeff_with_summary``."""

    def __init__(
        self,
        params,
        data,
        *,
        step_size: float,
        nbeta: float,
        localization: float,
        num_chains: int,
        num_draws: int,
        batch_size: int,
        device: str = "cpu",
        seed: int = 0,
    ):
        weights = [np.array(w, dtype=np.float32) for w in params]  # writable copies
        layers = [nn.Linear(w.shape[1], w.shape[0], bias=False) for w in weights]
        with torch.no_grad():
            for layer, w in zip(layers, weights):
                layer.weight.copy_(torch.from_numpy(w))
        self.device = torch.device(device)
        self.model = nn.Sequential(*layers).to(self.device)
        x, y = (torch.from_numpy(np.array(a, dtype=np.float32)) for a in data)
        self.full_data = (x.to(self.device), y.to(self.device))
        generator = torch.Generator().manual_seed(seed)
        self.loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, generator=generator)
        self.kwargs = dict(
            sampling_method=SGLD,
            optimizer_kwargs=dict(lr=step_size, nbeta=nbeta, localization=localization),
            num_chains=num_chains,
            num_draws=num_draws,
            num_burnin_steps=0,
            num_steps_bw_draws=1,
            cores=1,
            seed=seed,
            device=self.device,
            verbose=False,
        )
        self.nbeta = nbeta

    def full_loss(self) -> float:
        with torch.no_grad():
            return float(_criterion(self.model(self.full_data[0]), self.full_data[1]))

    def run(self) -> tuple[float, float]:
        """One estimate; returns ``(seconds, llc_mean)``. The result is on the host when timing stops."""
        kwargs = dict(self.kwargs)
        kwargs["optimizer_kwargs"] = dict(self.kwargs["optimizer_kwargs"])  # devinterp mutates it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = estimate_learning_coeff_with_summary(
                self.model, self.loader, evaluate=_evaluate, init_loss=self.full_loss(), **kwargs
            )
            llc = float(out["llc/mean"])
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
        return seconds, llc
