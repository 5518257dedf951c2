"""``slt`` against the PyTorch peer, devinterp 2.0.1, on the same small GPT with the same weights and data.

Issue #12, "Against the peer on the same model". Workload:

* language ``slt.models.SyntheticLanguage(32, seed=0)``; n = 1,024 training sequences of 33 tokens (32 next-token
  predictions each), 32 held-out probe sequences;
* model ``slt.models.GPT`` with ``GPTConfig(vocab_size=32, context_length=32, num_layers=2, num_heads=4,
  d_model=64)`` (MLP 256, untied unembedding, no dropout: 106,240 parameters), trained with
  ``slt.models.train`` (Adam 3e-3, batch 32, 600 steps);
* its weights copied into a minimal torch module with the same forward computation
  (``_devinterp_gpt.TorchGPT``); the torch logits must match JAX's to 1e-4 and the full-data loss L_n(w*) to
  1e-5 (relative), and the peer's own init loss must equal L_n(w*), or the script stops before any timing;
* SGLD with the same ε, nβ = n / log n, γ, batch 32 sequences × 32 tokens, 4 chains × 200 draws, no burn-in,
  the same L_n(w*), float32; ``slt.estimate_llc`` with a hand-set ``step_size`` in evaluation mode, devinterp's
  ``devinterp.slt.llc.llc`` (it forces training mode: no dropout here, so no effect);
* the BIF of the 32 probe sequences: ``slt.bif`` (per-sequence mean token loss) and devinterp's ``sample`` with the
  probe set as an observable + ``compute_bif(correlation_method="sequence", compute_covariance=True)``, same
  settings.

Measured: λ̂ ± MCSE on both sides (the MCSE of both from the (chain, draw) trace with the same formula,
``slt.diagnostics.mcse``), the BIF agreement (correlation of the covariance entries, z-scores with batch-means
MCSE on both sides), and the time per draw of each call in one process: ``slt.estimate_llc`` (first call, with
compilation, and warm calls), devinterp's ``llc`` call (where its time goes: chains, init-loss pass, the rest),
a bare PyTorch SGLD loop doing the same work, and devinterp on the same weights in Hugging Face's
``GPT2LMHeadModel`` (its usual model class).

The peer lives in its own environment so that torch never enters the main one (commands run from the repository
root)::

    python3 -m venv .venv-devinterp2
    .venv-devinterp2/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
    .venv-devinterp2/bin/pip install devinterp==2.0.1
    .venv-devinterp2/bin/pip install jax==0.10.2 jaxlib==0.10.2 flax==0.12.8 optax==0.2.8 arviz==0.23.4 \\
        numpyro==0.22.0 blackjax==1.7.1 tqdm matplotlib
    .venv-devinterp2/bin/pip install --no-deps -e .
    .venv-devinterp2/bin/python benchmarks/peer_gpt.py [--write]

(torch 2.13.0+cpu, devinterp 2.0.1, transformers 5.25.0 resolved on 2026-12-05). torch runs on one thread
(``--torch-threads``, default 1): on this shared 2-core machine a second torch thread made the same steps 3× to 20×
slower (a short probe at 2 threads is in the report). The whole script takes 6-12 minutes there, depending on the
load. Without torch/devinterp (the main ``.venv``) the script runs the slt side only. ``--write`` writes the section
"The PyTorch peer on the same GPT (issue #12)" of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import slt
import slt.llc as slt_llc
from slt.influence import cross_covariance

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402

SECTION = "The PyTorch peer on the same GPT (issue #12)"
VOCAB, T = 32, 32  # sequences hold T + 1 tokens
NUM_SEQUENCES = 1024
NUM_PROBES = 32
CONFIG = dict(vocab_size=VOCAB, context_length=T, num_layers=2, num_heads=4, d_model=64)
TRAIN_STEPS, TRAIN_LR = 600, 3e-3
BATCH_SIZE = 32
LOCALIZATION = 100.0
SEED = 0


# ------------------------------------------------------------------------------------------------ helpers
def load_average() -> str:
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "n/a"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_peer():
    """The devinterp runner module, or the reason it cannot be used."""
    try:
        import _devinterp_gpt
    except ImportError as err:
        return None, f"{type(err).__name__}: {err}"
    return _devinterp_gpt, None


def weights_of(model) -> dict[str, np.ndarray]:
    """The model's parameters as numpy arrays keyed by dotted NNX path (``"blocks.0.attn.qkv.kernel"``)."""
    out = {}
    for path, value in jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]:
        keys = [
            str(getattr(k, "key", getattr(k, "idx", None))) for k in path if not isinstance(k, jax.tree_util.GetAttrKey)
        ]
        out[".".join(keys)] = np.asarray(value)
    return out


@nnx.jit
def _logits(model, tokens):
    return model(tokens)


@nnx.jit
def _loss_sum(model, inputs, targets):
    log_probs = jax.nn.log_softmax(model(inputs).astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    return jnp.sum(nll)


def full_loss(model, tokens) -> float:
    """L_n(w*): mean next-token cross-entropy over all sequences and positions (chunks of 256 sequences)."""
    inputs, targets = slt.models.lm_data(tokens)
    total = sum(float(_loss_sum(model, inputs[i : i + 256], targets[i : i + 256])) for i in range(0, len(inputs), 256))
    return total / (inputs.shape[0] * inputs.shape[1])


def z_agreement(a: float, ea: float, b: float, eb: float) -> float:
    return (a - b) / math.hypot(ea, eb)


# ------------------------------------------------------------------------------------------------ benchmark
def run(args) -> dict:
    script_start = time.perf_counter()
    env = {
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "load_before": load_average(),
    }
    print(
        f"JAX {env['jax']} on {env['device']}; host {env['cpu']} ({env['cpu_count']} CPUs), load {env['load_before']}"
    )

    # data and model
    lang = slt.models.SyntheticLanguage(VOCAB, seed=SEED)
    tokens = lang.sample(jax.random.key(1), NUM_SEQUENCES, T + 1).tokens
    probe_tokens = lang.sample(jax.random.key(2), NUM_PROBES, T + 1).tokens
    data = slt.models.lm_data(tokens)
    probe = slt.models.lm_data(probe_tokens)
    config = slt.models.GPTConfig(**CONFIG)
    model = slt.models.GPT(config, rngs=nnx.Rngs(SEED))
    start = time.perf_counter()
    model, history = slt.models.train(
        model, data, key=jax.random.key(3), num_steps=TRAIN_STEPS, learning_rate=TRAIN_LR, batch_size=BATCH_SIZE
    )
    t_train = time.perf_counter() - start
    weights = weights_of(model)
    num_params = sum(w.size for w in weights.values())
    init_loss = full_loss(model, tokens)
    nbeta = NUM_SEQUENCES / math.log(NUM_SEQUENCES)
    settings = dict(
        step_size=args.step_size,
        nbeta=nbeta,
        localization=LOCALIZATION,
        num_chains=args.chains,
        num_draws=args.draws,
        batch_size=BATCH_SIZE,
    )
    draws_total = args.chains * args.draws
    print(
        f"GPT {num_params} parameters, trained {TRAIN_STEPS} steps in {t_train:.0f} s (last minibatch loss "
        f"{history[-1]:.3f}); L_n(w*) = {init_loss:.6f}; optimal loss of the language on these sequences "
        f"{lang.sample(jax.random.key(1), NUM_SEQUENCES, T + 1).optimal_loss():.4f}"
    )
    print(f"settings: {settings}")

    # the peer, before any timing: same logits, same L_n(w*)
    peer, why_not = (None, "skipped (--no-peer)") if args.no_peer else load_peer()
    runner = hf_runner = None
    if peer is None:
        print(f"devinterp: not run ({why_not})")
        env["peer"] = f"not run: {why_not}"
    else:
        import torch

        torch.set_num_threads(args.torch_threads)
        versions = peer.versions()
        env["peer"] = (
            f"devinterp {versions['devinterp']}, torch {versions['torch']} (CPU, {torch.get_num_threads()} thread(s))"
            + (f", transformers {versions['transformers']}" if "transformers" in versions else "")
        )
        print(env["peer"])
        torch_model = peer.TorchGPT.from_weights(weights, num_heads=config.num_heads)
        runner_args = dict(
            step_size=args.step_size,
            nbeta=nbeta,
            localization=LOCALIZATION,
            num_chains=args.chains,
            num_draws=args.draws,
            batch_size=BATCH_SIZE,
            seed=SEED,
        )
        runner = peer.PeerRunner(torch_model, np.asarray(tokens), **runner_args)
        check_tokens = np.asarray(tokens[:64, :-1])
        jax_logits = np.asarray(_logits(model, jnp.asarray(check_tokens)))
        diffs = {"TorchGPT": float(np.max(np.abs(runner.logits(check_tokens) - jax_logits)))}
        losses = {"TorchGPT": runner.full_loss()}
        if not args.no_hf:
            hf_runner = peer.PeerRunner(
                peer.hf_gpt2(weights, num_heads=config.num_heads), np.asarray(tokens), **runner_args
            )
            with torch.no_grad():
                hf_logits = hf_runner.model(torch.from_numpy(check_tokens.astype(np.int64))).logits.numpy()
            diffs["GPT2LMHeadModel"] = float(np.max(np.abs(hf_logits - jax_logits)))
            losses["GPT2LMHeadModel"] = hf_runner.full_loss()
        scale = float(np.max(np.abs(jax_logits)))
        for name in diffs:
            print(
                f"{name}: max |logits - JAX| = {diffs[name]:.2e} (max |logit| {scale:.1f}); L_n(w*) {losses[name]:.6f}"
            )
            if diffs[name] > 1e-4 * max(1.0, scale):
                raise RuntimeError(f"{name}'s logits differ from JAX's by {diffs[name]:.3g}")
            if not math.isclose(losses[name], init_loss, rel_tol=1e-5):
                raise RuntimeError(f"{name}'s L_n(w*) = {losses[name]} differs from JAX's {init_loss}")
        env["logit_diff"] = diffs
        env["torch_loss"] = losses

    # ---------------------------------------------------------------------------- the LLC, timed
    key = jax.random.key(SEED + 10)

    def call_slt(parts: dict | None = None):
        """One ``estimate_llc``; with ``parts``, the seconds of its stages inside the call are added to it (the
        module-level functions that ``slt.llc.estimate_llc`` calls, wrapped for the call and restored)."""
        patched = {}
        if parts is not None:
            for name in ("prepare_run", "_fixed_step_check", "sample", "summarize_run"):
                original = patched[name] = getattr(slt_llc, name)

                def timed(*a, _fn=original, _name=name, **k):
                    begin = time.perf_counter()
                    try:
                        return _fn(*a, **k)
                    finally:
                        parts[_name] = parts.get(_name, 0.0) + time.perf_counter() - begin

                setattr(slt_llc, name, timed)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", slt.SamplingWarning)
                return slt.estimate_llc(
                    model, data, loss=slt.models.token_cross_entropy, key=key, num_burnin=0, **settings
                )
        finally:
            for name, original in patched.items():
                setattr(slt_llc, name, original)

    rows: dict[str, dict] = {}
    cpu = time.process_time()  # CPU seconds of the process, all threads: each row's "cpu" is that of its last call
    start = time.perf_counter()
    res = call_slt()
    rows["slt"] = {"first": time.perf_counter() - start, "warm": [], "sampling": [res.wall_time]}
    rows["slt"]["cpu"] = time.process_time() - cpu
    peer_llc = None
    if runner is not None:
        cpu = time.process_time()
        peer_llc = runner.llc()
        rows["peer"] = {"first": peer_llc["seconds"], "warm": [], "parts": [peer_llc]}
        rows["peer"]["cpu"] = time.process_time() - cpu
        if not math.isclose(peer_llc["init_loss"], init_loss, rel_tol=1e-5):
            raise RuntimeError(f"the peer's init loss {peer_llc['init_loss']} differs from L_n(w*) = {init_loss}")
    for i in range(args.repeats):  # alternate, so that a change of load hits both
        parts: dict[str, float] = {}
        cpu, start = time.process_time(), time.perf_counter()
        again = call_slt(parts)
        rows["slt"]["warm"].append(time.perf_counter() - start)
        rows["slt"]["parts"] = parts  # of the last warm call
        rows["slt"]["cpu"] = time.process_time() - cpu
        rows["slt"]["sampling"].append(again.wall_time)
        if runner is not None and i < args.peer_repeats:
            cpu = time.process_time()
            out = runner.llc()
            rows["peer"]["cpu"] = time.process_time() - cpu
            rows["peer"]["warm"].append(out["seconds"])
            rows["peer"]["parts"].append(out)
    if runner is not None:
        cpu = time.process_time()
        bare = runner.bare_loop(seed=SEED)
        rows["bare"] = {"first": bare["seconds"], "warm": [], "cpu": time.process_time() - cpu}
        if hf_runner is not None:
            cpu = time.process_time()
            out = hf_runner.llc()
            rows["peer_hf"] = {"first": out["seconds"], "warm": [], "parts": [out], "cpu": time.process_time() - cpu}

    # the floor: a bare jit(vmap(scan SGLD)) in JAX with the same gradient work (benchmarks/speed.py's)
    from speed import make_floor

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_fn(p, batch):
        return slt.models.token_cross_entropy(nnx.merge(graphdef, p, rest)(batch[0]), batch[1])

    floor = make_floor(
        loss_fn,
        num_steps=args.draws,
        batch_size=BATCH_SIZE,
        step_size=args.step_size,
        nbeta=nbeta,
        localization=LOCALIZATION,
    )
    chain_keys = jax.random.split(jax.random.key(SEED + 30), args.chains)
    cpu, start = time.process_time(), time.perf_counter()
    floor_losses = np.asarray(floor(chain_keys, params, data), dtype=np.float64)
    rows["floor"] = {"first": time.perf_counter() - start, "warm": [], "cpu": time.process_time() - cpu}
    for _ in range(args.repeats):
        cpu, start = time.process_time(), time.perf_counter()
        np.asarray(floor(chain_keys, params, data))
        rows["floor"]["warm"].append(time.perf_counter() - start)
        rows["floor"]["cpu"] = time.process_time() - cpu

    # torch with 2 threads on this shared machine: a short probe of the bare loop
    if runner is not None and args.torch_threads != 2:
        torch.set_num_threads(2)
        probe_steps = 25
        rows["bare_2threads"] = {"first": runner.bare_loop(seed=SEED, num_chains=1, num_draws=probe_steps)["seconds"]}
        rows["bare_2threads"].update(warm=[], draws=probe_steps)
        short = runner.bare_loop(seed=SEED, num_chains=1, num_draws=probe_steps)["seconds"]
        torch.set_num_threads(args.torch_threads)
        rows["bare_1thread_short"] = {
            "first": runner.bare_loop(seed=SEED, num_chains=1, num_draws=probe_steps)["seconds"],
            "warm": [],
            "draws": probe_steps,
        }
        rows["bare_2threads"]["warm"].append(short)

    # ---------------------------------------------------------------------------- agreement of the LLC
    llc = {}
    plain = nbeta * (res.loss_trace - res.init_loss)
    llc["slt paired"] = (res.llc_mean, res.llc_mcse, res.rhat)
    llc["slt plain"] = (float(plain.mean()), slt.diagnostics.mcse(plain), slt.diagnostics.rhat(plain))
    if peer_llc is not None:
        trace = nbeta * (peer_llc["loss_trace"] - peer_llc["init_loss"])
        llc["devinterp"] = (peer_llc["llc_mean"], slt.diagnostics.mcse(trace), slt.diagnostics.rhat(trace))
        if not math.isclose(float(trace.mean()), peer_llc["llc_mean"], rel_tol=1e-4, abs_tol=1e-3):
            raise RuntimeError(f"recomputed peer LLC {trace.mean()} differs from its llc_mean {peer_llc['llc_mean']}")
        btrace = nbeta * (bare["loss_trace"] - init_loss)
        llc["bare PyTorch loop"] = (float(btrace.mean()), slt.diagnostics.mcse(btrace), slt.diagnostics.rhat(btrace))
    ftrace = nbeta * (floor_losses - init_loss)
    llc["bare JAX loop (floor)"] = (float(ftrace.mean()), slt.diagnostics.mcse(ftrace), slt.diagnostics.rhat(ftrace))
    for name, (m, e, r) in llc.items():
        print(f"LLC {name}: {m:.2f} ± {e:.2f} (R-hat {r:.3f})")

    # ---------------------------------------------------------------------------- the BIF
    bif = {}
    if not args.no_bif:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", slt.SamplingWarning)
            sb = slt.bif(
                model,
                data,
                loss=slt.models.token_cross_entropy,
                key=jax.random.key(SEED + 20),
                probe_data=probe,
                num_burnin=0,
                **settings,
            )
        bif["slt_seconds"] = time.perf_counter() - start
        bif["slt"] = (sb.covariance, sb.covariance_mcse)
        print(f"slt.bif: {bif['slt_seconds']:.1f} s (first call)")
        if runner is not None:
            pb = runner.bif(np.asarray(probe_tokens))
            bif["peer_seconds"] = pb["seconds"]
            cov, mcse = cross_covariance(pb["probe_trace"], pb["probe_trace"], sb.num_batches)
            # devinterp's own covariance (torch.cov, ddof 1) against the same numbers pooled here (ddof 0)
            m = draws_total
            bif["peer_check"] = float(np.max(np.abs(pb["covariance"] * (m - 1) / m - cov)) / np.max(np.abs(cov)))
            bif["peer"] = (pb["covariance"], mcse)
            print(
                f"devinterp BIF run: {pb['seconds']:.1f} s; its covariance vs the one recomputed from its traces: "
                f"max rel diff {bif['peer_check']:.1e}"
            )

    env["load_after"] = load_average()
    env["script_seconds"] = time.perf_counter() - script_start
    return dict(
        env=env,
        rows=rows,
        llc=llc,
        bif=bif,
        settings=settings,
        init_loss=init_loss,
        num_params=num_params,
        t_train=t_train,
        draws_total=draws_total,
        date=datetime.date.today().isoformat(),
        command=command_line(),
    )


ROOT = Path(__file__).resolve().parent.parent


def command_line() -> str:
    """The command as run from the repository root (the interpreter relative to it when it lives there)."""
    exe = Path(sys.executable)
    try:
        interpreter = str(exe.relative_to(ROOT))
    except ValueError:
        interpreter = "python"
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(ROOT)
    except ValueError:
        pass
    return " ".join([interpreter, str(script), *sys.argv[1:]])


# ------------------------------------------------------------------------------------------------ report
def bif_agreement(bif: dict) -> dict | None:
    if "peer" not in bif:
        return None
    (a, ea), (b, eb) = bif["slt"], bif["peer"]
    upper = np.triu_indices_from(a)
    diag = np.diag_indices_from(a)
    z = (a - b) / np.sqrt(ea**2 + eb**2)
    return dict(
        corr=float(np.corrcoef(a[upper], b[upper])[0, 1]),
        corr_diag=float(np.corrcoef(a[diag], b[diag])[0, 1]),
        max_z=float(np.max(np.abs(z[upper]))),
        frac_z2=float(np.mean(np.abs(z[upper]) > 2)),
        mean_z_diag=float(np.mean(z[diag])),
        ratio_diag=float(np.median(a[diag] / b[diag])),
        var_slt=float(np.median(a[diag])),
        var_peer=float(np.median(b[diag])),
        entries=len(upper[0]),
    )


LABELS = {
    "slt": "`slt.estimate_llc` (whole call)",
    "slt_sampling": "  of which sampling (`wall_time`)",
    "peer": "devinterp `llc()` (whole call)",
    "peer_chains": "  of which the SGLD chains",
    "peer_init": "  of which the init-loss pass (32 batches per chain)",
    "prepare_run": "  in the last warm call: `prepare_run` (argument checks, L_n(w*) on the full data)",
    "_fixed_step_check": "  in it: the fixed-step check (top Hessian eigenvalue, 20 HVPs on 2 batches of sequences)",
    "sample": "  in it: the chains (`sample`, the driver)",
    "summarize_run": "  in it: `summarize_run`",
    "slt_rest": "  in it: the rest (`make_target`, the result)",
    "floor": "floor: bare JAX `jit(vmap(scan SGLD))` (speed.py's, same work)",
    "bare": "bare PyTorch SGLD loop (same work, no store)",
    "bare_1thread_short": "  bare PyTorch loop, 1 chain × 25 steps, 1 torch thread",
    "bare_2threads": "  bare PyTorch loop, 1 chain × 25 steps, 2 torch threads",
    "peer_hf": "devinterp `llc()` on `GPT2LMHeadModel` (same weights)",
}


def speed_table(results: dict) -> list[str]:
    rows, d = results["rows"], results["draws_total"]

    def line(name, first, warm):
        draws = rows.get(name, {}).get("draws", d)
        w = statistics.median(warm) if warm else None

        def ms(seconds):
            return f"{1000 * seconds / draws:.1f}"

        c = rows.get(name, {}).get("cpu")
        f_s, f_ms = ("", "") if first is None else (f"{first:.2f}", ms(first))
        return (
            f"| {LABELS[name]} | {f_s} | {'' if w is None else f'{w:.2f}'} | {f_ms} | "
            f"{'' if w is None else ms(w)} | {len(warm)} | {'' if c is None else ms(c)} |"
        )

    out = [
        "| contestant | first call (s) | warm median (s) | first, ms/draw | warm, ms/draw | warm calls | "
        "CPU ms/draw, last call |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    s = rows["slt"]
    out.append(line("slt", s["first"], s["warm"]))
    out.append(line("slt_sampling", s["sampling"][0], s["sampling"][1:]))
    parts = s.get("parts", {})
    for name in ("prepare_run", "_fixed_step_check", "sample", "summarize_run"):
        if name in parts:
            out.append(line(name, None, [parts[name]]))
    if parts:
        rest = s["warm"][-1] - sum(parts.values())
        out.append(line("slt_rest", None, [rest]))
    out.append(line("floor", rows["floor"]["first"], rows["floor"]["warm"]))
    if "peer" in rows:
        p = rows["peer"]
        out.append(line("peer", p["first"], p["warm"]))
        chains = [x["chains_seconds"] for x in p["parts"]]
        inits = [x["init_loss_seconds"] for x in p["parts"]]
        out.append(line("peer_chains", chains[0], chains[1:]))
        out.append(line("peer_init", inits[0], inits[1:]))
        out.append(line("bare", rows["bare"]["first"], []))
        for name in ("bare_1thread_short", "bare_2threads"):
            if name in rows:
                out.append(line(name, rows[name]["first"], rows[name]["warm"]))
        if "peer_hf" in rows:
            out.append(line("peer_hf", rows["peer_hf"]["first"], []))
    return out


def ratio_lines(results: dict) -> list[str]:
    rows = results["rows"]
    if "peer" not in rows:
        return ["- devinterp: not run (" + results["env"]["peer"] + ")"]
    slt_warm = statistics.median(rows["slt"]["warm"]) if rows["slt"]["warm"] else rows["slt"]["first"]
    p = rows["peer"]
    peer_all = [p["first"], *p["warm"]]
    peer_best = statistics.median(peer_all)
    out = [
        f"- devinterp `llc()` / slt `estimate_llc`, whole calls, warm: **{peer_best / slt_warm:.2f}×** per draw "
        f"(devinterp median of its {len(peer_all)} calls, slt median of its warm calls; target ≥ 2×); against slt's "
        f"first call (compilation included): {peer_best / rows['slt']['first']:.2f}×",
        f"- devinterp's SGLD chains alone / slt whole warm call: "
        f"{statistics.median(x['chains_seconds'] for x in p['parts']) / slt_warm:.2f}×; "
        f"bare PyTorch loop / slt whole warm call: {rows['bare']['first'] / slt_warm:.2f}×",
    ]
    if "peer_hf" in rows:
        out.append(
            f"- devinterp on `GPT2LMHeadModel` / slt whole warm call: {rows['peer_hf']['first'] / slt_warm:.2f}×"
        )
    sampling = statistics.median(rows["slt"]["sampling"][1:] or rows["slt"]["sampling"])
    parts, last = rows["slt"].get("parts", {}), rows["slt"]["warm"][-1] if rows["slt"]["warm"] else None
    floor = statistics.median(rows["floor"]["warm"] or [rows["floor"]["first"]])
    peer_chains = statistics.median(x["chains_seconds"] for x in p["parts"])
    if parts and last:
        check = parts.get("_fixed_step_check", 0.0)
        out.append(
            f"- where slt's last warm call went: the chains {parts.get('sample', 0) / last:.0%}, the fixed-step check "
            f"{check / last:.0%}, `prepare_run` {parts.get('prepare_run', 0) / last:.0%}, `summarize_run` "
            f"{parts.get('summarize_run', 0) / last:.0%}, the rest {1 - sum(parts.values()) / last:.0%}; "
            f"devinterp / (that call less the check): {peer_best / (last - check):.2f}×"
        )
    out += [
        f"- per-step compute: slt's sampling / the JAX floor {sampling / floor:.2f}× (the floor has no loss at w* on "
        f"the minibatch, which the paired estimator adds); the JAX floor / the bare PyTorch loop "
        f"{floor / rows['bare']['first']:.2f}×; devinterp's chains / the bare PyTorch loop "
        f"{peer_chains / rows['bare']['first']:.2f}×",
        "- the fixed-step check (`_fixed_step_check` in `slt/llc.py`, run by every `estimate_llc` with a numeric "
        "`step_size`) is a power iteration of 20 Hessian-vector products on min(512, 2 × batch) examples; here "
        f"20 × {min(512, 2 * BATCH_SIZE)} = {20 * min(512, 2 * BATCH_SIZE):,} sequence-HVPs, "
        f"against {results['draws_total']} minibatch gradients of {BATCH_SIZE} sequences "
        f"({results['draws_total'] * BATCH_SIZE:,} sequence-gradients) for the chains",
    ]
    if "bare_2threads" in rows:
        two = statistics.median([rows["bare_2threads"]["first"], *rows["bare_2threads"]["warm"]])
        out.append(
            f"- torch runs on 1 thread: on this loaded machine 2 threads made the same 25 bare steps "
            f"{two / rows['bare_1thread_short']['first']:.1f}× slower (the table's last bare rows)"
        )
    return out


def llc_table(results: dict) -> list[str]:
    llc = results["llc"]
    out = ["| estimate | λ̂ ± MCSE | R-hat |", "| --- | ---: | ---: |"]
    for name, (m, e, r) in llc.items():
        out.append(f"| {name} | {m:.1f} ± {e:.1f} | {r:.3f} |")
    if "devinterp" in llc:
        z = {
            k: z_agreement(llc[k][0], llc[k][1], *llc["devinterp"][:2])
            for k in ("slt plain", "slt paired", "bare PyTorch loop")
        }
        out += [
            "",
            "z = (slt − devinterp) / √(MCSE² + MCSE²): plain estimator "
            f"**{z['slt plain']:+.2f}**, paired {z['slt paired']:+.2f}; bare PyTorch loop − devinterp "
            f"{z['bare PyTorch loop']:+.2f}.",
        ]
    return out


def bif_lines(results: dict) -> list[str]:
    bif = results["bif"]
    if not bif:
        return ["BIF: not run (--no-bif)."]
    agree = bif_agreement(bif)
    if agree is None:
        return [f"BIF: slt side only ({bif['slt_seconds']:.1f} s); devinterp not run."]
    return [
        "| quantity | value |",
        "| --- | ---: |",
        f"| entries compared (upper triangle of the {NUM_PROBES} × {NUM_PROBES} covariance) | {agree['entries']} |",
        f"| correlation of the entries, slt vs devinterp | {agree['corr']:.3f} |",
        f"| correlation of the variances (diagonal) | {agree['corr_diag']:.3f} |",
        f"| median Var(ℓ_i): slt / devinterp | {agree['var_slt']:.3g} / {agree['var_peer']:.3g} |",
        f"| median ratio of the variances, slt / devinterp | {agree['ratio_diag']:.3f} |",
        f"| max \\|z\\| over the entries | {agree['max_z']:.2f} |",
        f"| fraction of entries with \\|z\\| > 2 | {agree['frac_z2']:.3f} |",
        f"| mean z of the variances | {agree['mean_z_diag']:+.2f} |",
        f"| time of the run: slt.bif (first call) / devinterp sample+compute_bif (s) | {bif['slt_seconds']:.1f} / "
        f"{bif['peer_seconds']:.1f} |",
    ]


def report(results: dict) -> str:
    env, s = results["env"], results["settings"]
    lines = [
        f"Measured {results['date']} with `{results['command']}` in one process (the whole "
        f"script took {env['script_seconds'] / 60:.1f} min) on this machine's CPU: {env['cpu']}, "
        f"{env['cpu_count']} cores, no GPU, shared with other jobs: load average (1, 5, 15 min) "
        f"{env['load_before']} before, {env['load_after']} after, so every time is inflated and noisy. JAX "
        f"{env['jax']} on `{env['device']}`, Python {env['python']}; {env['peer']}.",
        "",
        f"Model: `slt.models.GPT` ({results['num_params']:,} parameters: 2 layers, 4 heads, d_model 64, MLP 256, "
        f"context 32, vocab 32, untied unembedding, no dropout) trained {TRAIN_STEPS} steps (Adam {TRAIN_LR:g}, "
        f"batch {BATCH_SIZE}) on n = {NUM_SEQUENCES} sequences of `SyntheticLanguage(32, seed=0)`; "
        f"L_n(w*) = {results['init_loss']:.5f} nats/token."
        + (
            " Its weights copied into a torch module with the same forward pass (`benchmarks/_devinterp_gpt.py`; "
            "and into `GPT2LMHeadModel`); max |logit difference| "
            + ", ".join(f"{k} {v:.1e}" for k, v in env["logit_diff"].items())
            + "; the peer's init loss over its 32 init batches equals L_n(w*) (one full pass; checked to 1e-5)."
            if "logit_diff" in env
            else ""
        ),
        "",
        f"Sampling, both sides: SGLD, ε = {s['step_size']:g}, nβ = n/log n = {s['nbeta']:.2f}, γ = "
        f"{s['localization']:g}, batch {s['batch_size']} sequences × 32 tokens, {s['num_chains']} chains × "
        f"{s['num_draws']} draws, no burn-in, float32, evaluation mode in slt (the peer forces training mode; no "
        "dropout here, so the same function). Minibatches differ by design: slt draws indices with replacement "
        "per chain; devinterp shuffles once per chain and cycles that epoch (`match_sampling_input_ids_across_"
        "chains=False`, so that its chains are independent like slt's; its default gives all chains the same "
        "batches). devinterp's estimator is the plain one, nβ(mean L_B(w_t) − L_n(w*)); slt's default is the "
        "paired one (same expectation), both from the same slt run below. MCSE of every row from its (chain, "
        "draw) λ̂ trace with `slt.diagnostics.mcse` (ArviZ).",
        "",
        "**LLC**",
        "",
        *llc_table(results),
        "",
        f"**BIF** of {NUM_PROBES} held-out probe sequences (posterior covariance of the per-sequence mean token "
        "losses, pooled over chains and draws; `slt.bif` vs devinterp's `sample` with the probe set as an observable "
        'and `compute_bif(correlation_method="sequence", compute_covariance=True)`, whose matrix agrees with the '
        "one recomputed here from its stored traces to "
        f"{results['bif'].get('peer_check', float('nan')):.0e}; z of each entry with batch-means MCSE on both sides):",
        "",
        *bif_lines(results),
        "",
        f"**Speed** ({results['draws_total']} draws = {s['num_chains']} chains × {s['num_draws']}; ms per draw = "
        "call time / draws, nothing excluded: slt's call includes its checks, L_n(w*) on the full data, the "
        "loss at w* on each minibatch for the paired estimator and the ArviZ diagnostics; devinterp's includes its "
        "init-loss pass, the Zarr store of the per-token losses and `compute_llc`. *CPU ms/draw*: the process CPU "
        "time, all threads, of the row's last call per draw: XLA runs on both cores, torch on one thread):",
        "",
        *speed_table(results),
        "",
        *ratio_lines(results),
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--step-size", type=float, default=1e-3, help="SGLD ε (both sides)")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1, help="warm calls of slt.estimate_llc and of the floor")
    parser.add_argument("--peer-repeats", type=int, default=1, help="devinterp calls after the first (<= repeats)")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads for the peer (default 1: on this shared 2-core machine two threads made a "
        "torch step 6-30x slower; a short 2-thread probe of the bare loop is reported beside it)",
    )
    parser.add_argument("--no-peer", action="store_true", help="slt side only, even if devinterp is importable")
    parser.add_argument("--no-hf", action="store_true", help="skip devinterp on GPT2LMHeadModel")
    parser.add_argument("--no-bif", action="store_true")
    parser.add_argument("--write", action="store_true", help=f"write the section '{SECTION}' of RESULTS.md")
    args = parser.parse_args(argv)
    results = run(args)
    text = report(results)
    print()
    print(text)
    if args.write:
        write_section(SECTION, text)
        print("wrote benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
