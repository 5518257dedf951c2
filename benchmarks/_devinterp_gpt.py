"""The devinterp 2.0.1 (PyTorch) side of ``benchmarks/peer_gpt.py``: the same GPT, weights, data and SGLD.

Imported by ``peer_gpt.py`` only when torch and devinterp are importable, so that torch never enters the main
environment. devinterp lives in its own virtual environment (``.venv-devinterp2``, see ``peer_gpt.py``).

What devinterp 2.0.1 does (read from its source, ``devinterp/slt/{sampling,sampler,llc,bif,observables}.py`` and
``devinterp/optim/{sgmcmc,prior}.py``):

* entry points ``devinterp.slt.llc.llc(model, dataset, observables, lr=, n_beta=, ...)`` and
  ``devinterp.slt.bif.bif(...)``, both ``sample(...)`` (per-token losses of every SGLD step and of every
  observable at every draw, written to a Zarr store) followed by ``compute_llc`` / ``compute_bif`` on that store;
  the data are a Hugging Face ``datasets.Dataset`` with an ``input_ids`` column, the loss is a per-token
  next-token cross-entropy ``(batch, T-1)`` (default ``lm_loss.compute_per_token_loss``, which runs the model on
  all T tokens; here ``loss_fn=token_losses``, the same on ``tokens[:, :-1]``, see :func:`token_losses`); its
  mean over the batch and the tokens is the loss whose gradient SGLD uses;
* the SGLD update (``SGMCMC.sgld`` with a ``GaussianPrior`` centred at the initial weights): ``w -= lr/2 (nβ ∇L_B +
  γ (w - w*))``, then ``w += sqrt(lr) N(0, I)`` (``noise_level`` 1): the same update as slt's with ε = ``lr``;
* minibatches: per chain a ``DataLoader(shuffle=True, drop_last=True)`` whose first epoch is replayed by
  ``itertools.cycle`` (without replacement within the epoch; slt draws with replacement); by default every chain
  sees the same batches in the same order (``match_sampling_input_ids_across_chains=True``, the chains then
  differ only in their noise), which we switch off so that the chains are independent, as the MCSE assumes;
* the loss recorded at step t is the minibatch loss *before* the update (at w_t, w_0 = w*), like slt's;
* ``init_loss`` has no override: per chain it is the mean of ``num_init_loss_batches`` (default 32) minibatch
  losses of the same shuffled loader. With n = 32 × 32 sequences and batch 32 those 32 batches are exactly one
  pass over the data, so the peer's init loss *is* L_n(w*) (checked against JAX's before anything is timed);
* ``compute_llc``: ``n_beta * (mean over all steps, burn-in included, of the minibatch loss - mean init_loss)``,
  the plain estimator;
* ``compute_bif``: with ``correlation_method="sequence"`` and ``compute_covariance=True``, ``torch.cov`` of the
  per-sequence mean token losses of the observable, draws of all chains stacked (pooled mean, ddof 1);
* it forces training mode (``model.train()`` in ``sample_single_chain`` and ``_write_init_loss``); the torch
  model here has no dropout, so that changes nothing.
"""

from __future__ import annotations

import importlib.metadata
import math
import tempfile
import time
import warnings

import devinterp.slt.sampling as di_sampling
import numpy as np
import torch
from datasets import Dataset
from devinterp.slt.bif import compute_bif
from devinterp.slt.llc import compute_llc
from torch import nn

__all__ = ["TorchGPT", "PeerRunner", "hf_gpt2", "versions"]


def versions() -> dict[str, str]:
    out = {"devinterp": importlib.metadata.version("devinterp"), "torch": torch.__version__}
    try:
        out["transformers"] = importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        pass
    return out


# ------------------------------------------------------------------------------------------- the model
class _Block(nn.Module):
    def __init__(self, d_model: int, num_heads: int, d_mlp: int):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, d_model // num_heads
        self.ln1 = nn.LayerNorm(d_model, eps=1e-5)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model, eps=1e-5)
        self.fc = nn.Linear(d_model, d_mlp)
        self.proj = nn.Linear(d_mlp, d_model)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, t, d = h.shape
        qkv = self.qkv(self.ln1(h)).reshape(b, t, 3, self.num_heads, self.head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (b, t, H, d_h)
        scores = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(self.head_dim)
        causal = torch.ones(t, t, dtype=torch.bool, device=h.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        o = torch.einsum("bhts,bshd->bthd", torch.softmax(scores, dim=-1), v).reshape(b, t, d)
        h = h + self.out(o)
        return h + self.proj(nn.functional.gelu(self.fc(self.ln2(h)), approximate="tanh"))


class TorchGPT(nn.Module):
    """``slt.models.GPT``'s forward pass in torch: token + learned position embeddings, pre-norm blocks with a fused
    q/k/v projection (columns ``[q heads | k heads | v heads]``), scores scaled by 1/sqrt(d_h), tanh GELU, LayerNorm
    ε = 1e-5, final LayerNorm and an untied bias-free unembedding. ``forward(input_ids) -> logits``."""

    def __init__(self, vocab_size: int, context_length: int, num_layers: int, num_heads: int, d_model: int, d_mlp: int):
        super().__init__()
        self.token_embed = nn.Embedding(vocab_size, d_model)
        self.position_embed = nn.Embedding(context_length, d_model)
        self.blocks = nn.ModuleList([_Block(d_model, num_heads, d_mlp) for _ in range(num_layers)])
        self.ln_f = nn.LayerNorm(d_model, eps=1e-5)
        self.unembed = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        t = input_ids.shape[-1]
        h = self.token_embed(input_ids) + self.position_embed.weight[:t]
        for block in self.blocks:
            h = block(h)
        return self.unembed(self.ln_f(h))

    @classmethod
    def from_weights(cls, weights: dict[str, np.ndarray], *, num_heads: int) -> TorchGPT:
        """Build from slt's weights, keyed by NNX path (``"blocks.0.attn.qkv.kernel"``, ...); Dense kernels
        ``(in, out)`` are transposed to torch's ``(out, in)``."""
        vocab, d_model = weights["token_embed.embedding"].shape
        num_layers = 1 + max(int(k.split(".")[1]) for k in weights if k.startswith("blocks."))
        model = cls(
            vocab,
            weights["position_embed.embedding"].shape[0],
            num_layers,
            num_heads,
            d_model,
            weights["blocks.0.mlp.fc.kernel"].shape[1],
        )
        table = {
            "token_embed.weight": weights["token_embed.embedding"],
            "position_embed.weight": weights["position_embed.embedding"],
            "ln_f.weight": weights["ln_f.scale"],
            "ln_f.bias": weights["ln_f.bias"],
            "unembed.weight": weights["unembed.kernel"].T,
        }
        for layer in range(num_layers):
            src, dst = f"blocks.{layer}.", f"blocks.{layer}."
            for ln in ("ln1", "ln2"):
                table[dst + ln + ".weight"] = weights[src + ln + ".scale"]
                table[dst + ln + ".bias"] = weights[src + ln + ".bias"]
            for jax_name, torch_name in (
                ("attn.qkv", "qkv"),
                ("attn.out", "out"),
                ("mlp.fc", "fc"),
                ("mlp.proj", "proj"),
            ):
                table[dst + torch_name + ".weight"] = weights[src + jax_name + ".kernel"].T
                table[dst + torch_name + ".bias"] = weights[src + jax_name + ".bias"]
        _load(model, table)
        return model


def hf_gpt2(weights: dict[str, np.ndarray], *, num_heads: int):
    """The same weights in Hugging Face's ``GPT2LMHeadModel`` (untied unembedding, tanh GELU, no dropout, eager
    attention): the peer's usual model class. ``Conv1D`` weights are stored ``(in, out)`` like slt's kernels."""
    from transformers import GPT2Config, GPT2LMHeadModel

    vocab, d_model = weights["token_embed.embedding"].shape
    num_layers = 1 + max(int(k.split(".")[1]) for k in weights if k.startswith("blocks."))
    config = GPT2Config(
        vocab_size=vocab,
        n_positions=weights["position_embed.embedding"].shape[0],
        n_embd=d_model,
        n_layer=num_layers,
        n_head=num_heads,
        n_inner=weights["blocks.0.mlp.fc.kernel"].shape[1],
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=1e-5,
        tie_word_embeddings=False,
    )
    config._attn_implementation = "eager"
    model = GPT2LMHeadModel(config)
    table = {
        "transformer.wte.weight": weights["token_embed.embedding"],
        "transformer.wpe.weight": weights["position_embed.embedding"],
        "transformer.ln_f.weight": weights["ln_f.scale"],
        "transformer.ln_f.bias": weights["ln_f.bias"],
        "lm_head.weight": weights["unembed.kernel"].T,
    }
    for layer in range(num_layers):
        src, dst = f"blocks.{layer}.", f"transformer.h.{layer}."
        table[dst + "ln_1.weight"] = weights[src + "ln1.scale"]
        table[dst + "ln_1.bias"] = weights[src + "ln1.bias"]
        table[dst + "ln_2.weight"] = weights[src + "ln2.scale"]
        table[dst + "ln_2.bias"] = weights[src + "ln2.bias"]
        for jax_name, hf_name in (
            ("attn.qkv", "attn.c_attn"),
            ("attn.out", "attn.c_proj"),
            ("mlp.fc", "mlp.c_fc"),
            ("mlp.proj", "mlp.c_proj"),
        ):
            table[dst + hf_name + ".weight"] = weights[src + jax_name + ".kernel"]
            table[dst + hf_name + ".bias"] = weights[src + jax_name + ".bias"]
    _load(model, table)
    return model


def _load(model: nn.Module, table: dict[str, np.ndarray]) -> None:
    params = dict(model.named_parameters())
    missing = set(params) - set(table)
    extra = set(table) - set(params)
    if missing or extra:
        raise RuntimeError(
            f"weight copy does not cover the torch model: missing {sorted(missing)}, extra {sorted(extra)}"
        )
    with torch.no_grad():
        for name, value in table.items():
            value = torch.from_numpy(np.array(value, dtype=np.float32))
            if params[name].shape != value.shape:
                raise RuntimeError(f"{name}: torch shape {tuple(params[name].shape)}, copied {tuple(value.shape)}")
            params[name].copy_(value)
    model.eval()


def token_losses(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``(B, T-1)`` next-token cross-entropy of sequences ``(B, T)``, the model run on ``tokens[:, :-1]``.

    Passed to devinterp as ``loss_fn``: its default (``compute_per_token_loss``) runs the model on all T tokens and
    drops the last position's logits, which needs a context of T = 33 positions here (the model has 32, like
    ``slt.models.lm_data``'s inputs). Otherwise the same computation, including its finite-logits check."""
    from devinterp.slt.lm_loss import NonFiniteLogitsError, lm_forward_logits

    logits = lm_forward_logits(model, tokens[:, :-1])
    if not torch.isfinite(logits).all():
        raise NonFiniteLogitsError("Non-finite values detected in model logits.")
    log_probs = torch.nn.functional.log_softmax(logits, dim=-1)
    return -log_probs.gather(dim=-1, index=tokens[:, 1:, None])[..., 0]


# ------------------------------------------------------------------------------------------- the runner
class PeerRunner:
    """The torch model, the data as a Hugging Face ``Dataset`` and devinterp's sampling settings.

    ``llc()`` is one ``devinterp.slt.llc.llc`` call; ``bif(probe)`` one ``sample`` with the probe set as an
    observable followed by ``compute_llc`` and ``compute_bif``; ``bare_loop()`` the same SGLD work written out in
    plain PyTorch (minibatches with replacement, no store)."""

    def __init__(
        self,
        model: nn.Module,
        tokens: np.ndarray,
        *,
        step_size: float,
        nbeta: float,
        localization: float,
        num_chains: int,
        num_draws: int,
        batch_size: int,
        seed: int = 0,
    ):
        self.model = model
        self.tokens = torch.from_numpy(np.asarray(tokens, dtype=np.int64))
        n = self.tokens.shape[0]
        if n % batch_size:
            raise ValueError(f"the number of sequences ({n}) must be a multiple of the batch size ({batch_size})")
        self.dataset = Dataset.from_dict({"input_ids": self.tokens.numpy()}).with_format("torch")
        self.settings = dict(
            lr=step_size,
            n_beta=nbeta,
            localization=localization,
            num_chains=num_chains,
            num_draws=num_draws,
            batch_size=batch_size,
            num_burnin_steps=0,
            num_init_loss_batches=n // batch_size,  # one full pass: the peer's init_loss is L_n(w*)
            match_sampling_input_ids_across_chains=False,
            init_seed=100 + seed,
            device="cpu",
            loss_fn=token_losses,
        )
        self.seconds: dict[str, float] = {}

    # ---------------------------------------------------------------------------------------- checks
    @torch.no_grad()
    def logits(self, tokens: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(np.asarray(tokens, dtype=np.int64))).numpy()

    @torch.no_grad()
    def full_loss(self) -> float:
        losses = [token_losses(self.model, chunk).double().sum() for chunk in self.tokens.split(256)]
        return float(sum(losses) / (self.tokens.shape[0] * (self.tokens.shape[1] - 1)))

    # ---------------------------------------------------------------------------------------- timing
    def _timed_sample(self, observables: dict, output_path: str):
        """``devinterp.slt.sampling.sample`` with its chains and its init-loss pass timed separately."""
        spent = {"chains": 0.0, "init_loss": 0.0}
        original_chain, original_init = di_sampling.sample_single_chain, di_sampling._write_init_loss

        def chain(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original_chain(*args, **kwargs)
            finally:
                spent["chains"] += time.perf_counter() - start

        def init(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original_init(*args, **kwargs)
            finally:
                spent["init_loss"] += time.perf_counter() - start

        di_sampling.sample_single_chain, di_sampling._write_init_loss = chain, init
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                samples = di_sampling.sample(
                    model=self.model,
                    dataset=self.dataset,
                    observables=observables,
                    output_path=output_path,
                    **self.settings,
                )
        finally:
            di_sampling.sample_single_chain, di_sampling._write_init_loss = original_chain, original_init
        return samples, spent

    def llc(self) -> dict:
        """One ``llc(...)`` (= ``sample`` + ``compute_llc``), timed from the call to the numbers on the host.

        Returns ``seconds`` (the whole call), ``chains_seconds`` and ``init_loss_seconds`` (inside it),
        ``llc_mean``, ``init_loss`` (the peer's) and ``loss_trace`` ``(chains, steps)``."""
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            samples, spent = self._timed_sample({}, f"{tmp}/samples.zarr")
            out = compute_llc(samples)
            llc_mean = float(out["llc_mean"].values)
            trace = np.asarray(out["loss_trace"].values, dtype=np.float64)
            seconds = time.perf_counter() - start
            init_loss = float(out["init_loss"].values)
        return dict(
            seconds=seconds,
            chains_seconds=spent["chains"],
            init_loss_seconds=spent["init_loss"],
            llc_mean=llc_mean,
            init_loss=init_loss,
            loss_trace=trace,
        )

    def bif(self, probe_tokens: np.ndarray) -> dict:
        """One sampling run with the probe sequences as an observable (``batches_per_draw`` 1: the probe set must
        hold exactly ``batch_size`` sequences), then ``compute_llc`` and ``compute_bif(correlation_method=
        "sequence", compute_covariance=True)``. The peer stores the probe set in its own shuffled order; the
        covariance and the ``(chains, draws, P)`` trace of per-sequence losses are returned in the caller's order."""
        probe_tokens = np.asarray(probe_tokens, dtype=np.int64)
        if probe_tokens.shape[0] != self.settings["batch_size"]:
            raise ValueError(f"the probe set must hold batch_size = {self.settings['batch_size']} sequences")
        probe = Dataset.from_dict({"input_ids": probe_tokens}).with_format("torch")
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            samples, spent = self._timed_sample({"probe": (probe, 1)}, f"{tmp}/samples.zarr")
            result = compute_bif(samples, correlation_method="sequence", compute_covariance=True, device="cpu")
            cov = np.asarray(result["influences"].values, dtype=np.float64)
            stored = np.asarray(result["input_ids"].values)
            llc_out = compute_llc(samples)
            trace = np.asarray(samples.dataset["loss_probe"].values, dtype=np.float64).mean(axis=-1)  # (C, D, P)
            seconds = time.perf_counter() - start
        # the peer's order -> ours
        index = {row.tobytes(): i for i, row in enumerate(stored.astype(np.int64))}
        order = np.array([index[row.tobytes()] for row in probe_tokens])
        return dict(
            seconds=seconds,
            chains_seconds=spent["chains"],
            covariance=cov[np.ix_(order, order)],
            probe_trace=trace[:, :, order],
            llc_mean=float(llc_out["llc_mean"].values),
            loss_trace=np.asarray(llc_out["loss_trace"].values, dtype=np.float64),
            init_loss=float(llc_out["init_loss"].values),
        )

    def bare_loop(self, seed: int = 0, num_chains: int | None = None, num_draws: int | None = None) -> dict:
        """The same SGLD work in plain PyTorch: chains one after another, minibatch indices drawn with replacement,
        ``w -= ε/2 (nβ ∇L_B + γ (w - w*))``, ``w += sqrt(ε) N(0, I)``, the loss of each step kept (fewer chains or
        draws than the settings' when given)."""
        s = dict(self.settings)
        s["num_chains"] = num_chains or s["num_chains"]
        s["num_draws"] = num_draws or s["num_draws"]
        lr, nbeta, gamma = s["lr"], s["n_beta"], s["localization"]
        params = [p for p in self.model.parameters()]
        center = [p.detach().clone() for p in params]
        generator = torch.Generator().manual_seed(seed)
        n = self.tokens.shape[0]
        losses = np.empty((s["num_chains"], s["num_draws"]))
        start = time.perf_counter()
        for chain in range(s["num_chains"]):
            with torch.no_grad():
                for p, c in zip(params, center):
                    p.copy_(c)
            for step in range(s["num_draws"]):
                idx = torch.randint(0, n, (s["batch_size"],), generator=generator)
                loss = token_losses(self.model, self.tokens[idx]).mean()
                grads = torch.autograd.grad(loss, params)
                with torch.no_grad():
                    for p, g, c in zip(params, grads, center):
                        p.add_(nbeta * g + gamma * (p - c), alpha=-0.5 * lr)
                        p.add_(torch.randn(p.shape, generator=generator), alpha=math.sqrt(lr))
                losses[chain, step] = loss.item()
        seconds = time.perf_counter() - start
        with torch.no_grad():
            for p, c in zip(params, center):
                p.copy_(c)
        return dict(seconds=seconds, loss_trace=losses)
