# %% [markdown]
# # 10 · Activation sparsity: which neurons fire, and can we predict them?
#
# This is the first half of the PowerInfer-2 story. A transformer spends most of its weights in
# the feed-forward networks (FFNs): `FFN(x) = W_down · relu(W_up · x + b)`. After a ReLU, a
# neuron whose pre-activation is negative outputs **exactly 0**, and its column of `W_down` is
# multiplied by 0. If we knew in advance which neurons fire for this token, we could skip the
# others entirely and read a fraction of the weights: at batch size 1 the FFN is limited by
# memory bandwidth, so fewer bytes means proportionally less time.
#
# We study a **real trained model**: a small byte-level ReLU language model that `make data`
# trained on Python's own standard library (its source and the pydoc reference pages, which ship
# with every Python). Along the way:
#
# 1. heatmaps of which neurons fire on each token;
# 2. the power law of how often each neuron fires (hot and cold neurons);
# 3. one token against the union over a prompt: why prefill is dense;
# 4. training activation **predictors** (low-rank and MLP) and their recall/precision trade-off;
# 5. what a predictor costs in accuracy: FFN output error and perplexity on held-out text.

# %%
import numpy as np
import torch

from teachkit import check, viz
from teachkit.sparse import stats
from teachkit.sparse.lm import load_lm, perplexity, record_ffn

torch.set_num_threads(1)

# %% [markdown]
# ## 1. The model and its held-out text
#
# `load_lm()` reads `data/sparse_lm.pt` (run `make data` if it is missing). The model is the
# course's tiny GPT with ReLU FFNs; its training loss had a small L1 penalty on the FFN
# activations (the idea of ProSparse), which pushes more of them to exactly zero. The held-out
# text is a set of standard-library files the model never trained on.

# %%
# NBVAL_CHECK_OUTPUT
model, payload = load_lm()
cfg = model.config
held_out, train_text = payload["held_out"], payload["train_sample"]
print(f"{cfg.n_layer} layers, d_model={cfg.d_model}, d_ff={cfg.d_ff}, ReLU FFNs, "
      f"{model.num_parameters():,} parameters, byte vocabulary of {cfg.vocab_size}")
print(f"held-out text: {len(held_out):,} bytes; training sample: {len(train_text):,} bytes")
ppl_dense = perplexity(model, held_out[:8192])
print(f"held-out perplexity per byte: {ppl_dense:.3f}")

# %% [markdown]
# `record_ffn` runs the model over a token stream and records, for every layer, the FFN's input
# `x` (after the LayerNorm: what a predictor may look at) and its post-ReLU activations `h`.

# %%
# NBVAL_CHECK_OUTPUT
xs, hs = record_ffn(model, held_out[:8192])
print("FFN inputs:", [x.shape for x in xs][0], " activations:", [h.shape for h in hs][0],
      " per layer, for", len(hs), "layers")
for layer, h in enumerate(hs):
    act = stats.activity_per_token(h)
    print(f"layer {layer}: {act.mean():.1%} of neurons active per token "
          f"(10th-90th percentile {np.quantile(act, 0.1):.1%}-{np.quantile(act, 0.9):.1%})")

# %% [markdown]
# ## 2. Which neurons fire on each token
#
# Each row is a token of the held-out text (the byte is written on the left), each column a
# neuron, dark when it fires. Most of the picture is white: that is the sparsity. Some columns
# are dark almost everywhere (**hot** neurons), most are rarely dark (**cold** ones), and
# neighbouring tokens share many of their neurons.

# %%
labels = [chr(b) if 32 <= b < 127 else "·" for b in held_out[:32].tolist()]
viz.plot_activation_heatmap(hs[1][:32], title="layer 1, 32 held-out tokens", labels=labels)

# %% [markdown]
# ## 3. Hot and cold neurons: a power law
#
# Count, for each neuron, the fraction of tokens it fires on, and sort. Plotted on log-log axes
# the curve is close to a straight line over most ranks, `f(r) ≈ C · r^(-α)`: a power law. A
# small hot set does most of the firing. PowerInfer reports that 26% of OPT-30B's neurons give
# 80% of its activations.

# %%
# NBVAL_CHECK_OUTPUT
def firing_frequency(H):
    return (H > 0).mean(axis=0)          # fraction of tokens each neuron fires on


freqs = {f"layer {l}": firing_frequency(h) for l, h in enumerate(hs)}
assert np.allclose(freqs["layer 0"], stats.firing_frequency(hs[0]))
fits = {k: stats.fit_power_law(f) for k, f in freqs.items()}
for k, f in freqs.items():
    print(f"{k}: {stats.hot_share(f, 0.8):.0%} of neurons give 80% of the firings, "
          f"{(f == 0).mean():.0%} never fire here, fitted alpha = {fits[k][0]:.2f}")

# %%
viz.plot_power_law(freqs, {"layer 1": fits["layer 1"]},
                   title="trained ReLU LM: firing frequency by neuron rank")

# %% [markdown]
# ## 4. One token is sparse, a prompt is dense
#
# During decoding the model handles one token at a time, and only its active set matters. A
# prompt (prefill), or a batch, needs the **union** of the active sets of all its tokens, and
# the union grows fast: every token brings its own cold neurons. Below, 128 tokens need 4×
# (layer 0) to more than 10× (the other layers) the neurons of one token: most of the neurons
# that fire at all (in this small model some never fire on this text; in PowerInfer-2's 7B
# models 128 tokens activate 99.99%). That is why PowerInfer-2 runs prefill densely (on the
# NPU) and uses sparsity only for decoding.

# %%
# NBVAL_CHECK_OUTPUT
windows = [1, 2, 4, 8, 16, 32, 64, 128]
unions = {f"layer {l}": [stats.union_activity(h, k) for k in windows] for l, h in enumerate(hs)}
for (k, u), h in zip(unions.items(), hs):
    ever = (firing_frequency(h) > 0).mean()
    print(k, " ".join(f"{v:.2f}" for v in u), f"| ever fire: {ever:.2f}")
assert all(u[-1] > 2 * u[0] for u in unions.values())

# %%
viz.plot_union_activity(windows, unions)

# %% [markdown]
# ## 5. Predicting the active set
#
# To skip a neuron we must know *before* computing it that it will not fire. A **predictor**
# looks at the FFN input `x` and guesses the active set. Two classic designs, each one per layer:
#
# * **low-rank** (Deja Vu, LLM in a flash): `logits = (x A) B + c`, with `A` of shape (d, r) and
#   `B` of shape (r, d_ff). It costs `r (d + d_ff)` multiply-adds instead of the FFN's `2 d d_ff`.
# * **MLP** (PowerInfer): `logits = relu(x W1 + b1) W2 + b2`.
#
# Both are trained with binary cross-entropy on recorded `(x, h > 0)` pairs from the
# *training* text, and tested on the held-out text. Here is the low-rank training loop, written
# out for layer 1:

# %%
# NBVAL_CHECK_OUTPUT
xs_train, hs_train = record_ffn(model, train_text[:16_384])
layer, rank = 1, 32
X = torch.from_numpy(xs_train[layer])
M = torch.from_numpy((hs_train[layer] > 0).astype(np.float32))
mu, sd = X.mean(0), X.std(0) + 1e-6
torch.manual_seed(0)
A = (torch.randn(cfg.d_model, rank) / cfg.d_model ** 0.5).requires_grad_()
Bm = (torch.randn(rank, cfg.d_ff) / rank ** 0.5).requires_grad_()
rate = M.mean(0).clamp(1e-4, 1 - 1e-4)
c = torch.log(rate / (1 - rate)).clone().requires_grad_()    # start at each neuron's base rate
opt = torch.optim.Adam([A, Bm, c], lr=3e-3)
g = torch.Generator().manual_seed(0)
for epoch in range(6):
    perm, total = torch.randperm(len(X), generator=g), 0.0
    for s in range(0, len(X), 256):
        j = perm[s:s + 256]
        logits = ((X[j] - mu) / sd) @ A @ Bm + c
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, M[j])
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item() * len(j)
    print(f"epoch {epoch}: mean BCE {total / len(X):.4f}")

# %% [markdown]
# The library's `train_predictor` is the same loop (it folds the standardisation into the
# weights so prediction is plain numpy). We train both kinds for every layer:

# %%
# NBVAL_CHECK_OUTPUT
from teachkit.sparse.build_data import train_layer_predictors
from teachkit.sparse.predictor import recall_precision, threshold_sweep

preds = {kind: train_layer_predictors(xs_train, hs_train, kind, rank=32, epochs=6)
         for kind in ("lowrank", "mlp")}
for kind, ps in preds.items():
    print(f"{kind:8s} predictor: {ps[0].n_params():,} parameters per layer "
          f"(the FFN has {2 * cfg.d_model * cfg.d_ff + cfg.d_ff + cfg.d_model:,})")
    for l, p in enumerate(ps):
        r, prec = recall_precision(p.predict_mask(xs[l], 0.5), hs[l] > 0)
        print(f"  layer {l}: held-out recall {r:.3f}, precision {prec:.3f} at threshold 0.5")

# %% [markdown]
# A missed neuron (a false negative) changes the output; an extra neuron (a false positive)
# only costs bandwidth. So we lower the threshold to buy recall with precision. The sweep below
# is on held-out text, layer 1:

# %%
# NBVAL_CHECK_OUTPUT
thresholds = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7)
sweeps = {kind: threshold_sweep(ps[1], xs[1], hs[1] > 0, thresholds) for kind, ps in preds.items()}
print("threshold | low-rank recall precision computed | MLP recall precision computed")
for a, b in zip(sweeps["lowrank"], sweeps["mlp"]):
    print(f"  {a[0]:.2f}    |   {a[1]:.3f}   {a[2]:.3f}   {a[3]:.1%}    |   {b[1]:.3f}   {b[2]:.3f}   {b[3]:.1%}")

# %%
viz.plot_predictor_tradeoff({"low-rank": sweeps["lowrank"], "MLP": sweeps["mlp"]},
                            title="layer 1, held-out text")

# %% [markdown]
# ## 6. What the predictor costs in accuracy
#
# Run the whole model with every FFN restricted to the predicted neurons, and compare with the
# dense model: the relative error of the FFN outputs and the held-out **perplexity**.

# %%
# NBVAL_CHECK_OUTPUT
def masker_for(ps, threshold):
    return lambda layer, x: ps[layer].predict_mask(x, threshold)


def oracle(layer, x):
    return np.ones((len(x), cfg.d_ff), bool)          # all neurons: the dense model


text = held_out[:8192]
print(f"dense model: perplexity {ppl_dense:.3f}")
assert abs(perplexity(model, text, oracle) - ppl_dense) < 1e-4
for kind in ("lowrank", "mlp"):
    for t in (0.05, 0.2, 0.5):
        ppl = perplexity(model, text, masker_for(preds[kind], t))
        kept = np.mean([p.predict_mask(xs[l], t).mean() for l, p in enumerate(preds[kind])])
        print(f"{kind:8s} threshold {t:.2f}: computes {kept:.1%} of neurons, "
              f"perplexity {ppl:.3f} ({(ppl / ppl_dense - 1):+.1%})")


# %%
# NBVAL_CHECK_OUTPUT
def ffn_output_error(layer, mask):
    """Relative error of one layer's FFN output when only `mask` neurons are kept."""
    blk = model.blocks[layer].mlp
    with torch.no_grad():
        h = torch.from_numpy(hs[layer])
        full = blk.proj(h)
        part = blk.proj(h * torch.from_numpy(mask.astype(np.float32)))
    return float((part - full).norm() / full.norm())


for kind in ("lowrank", "mlp"):
    errs = [ffn_output_error(l, p.predict_mask(xs[l], 0.2)) for l, p in enumerate(preds[kind])]
    print(f"{kind:8s} threshold 0.20: FFN output relative error per layer",
          " ".join(f"{e:.3f}" for e in errs))

# %% [markdown]
# Lower thresholds keep more neurons and bring the model closer to dense; the predictor's
# recall, not its precision, decides the accuracy cost.
#
# ## 7. The same statistics at realistic shapes: a SYNTHETIC stack
#
# This model is tiny (d_ff = 512), far too small to time kernels on. Notebook 11 and the
# benchmark use **SYNTHETIC** FFN layers at 7B shapes (d = 4096, d_ff = 11008) whose
# statistics follow the published figures for sparse 7B models (about 10% of neurons active per
# token), with a power-law hot set like the one we just measured and hidden states that drift
# slowly so the active set is predictable. Here is a small one, next to the real model:

# %%
# NBVAL_CHECK_OUTPUT
from teachkit.sparse.synthetic import SyntheticConfig, SyntheticStack

syn = SyntheticStack(SyntheticConfig(d=256, d_ff=1024, n_layers=1, rank=16, seed=0))
print(syn.describe())
Xs = syn.hidden_states(0, 2000)
Hs = syn.preactivations(0, Xs)
print(f"SYNTHETIC: {stats.activity_per_token(Hs).mean():.1%} active per token, "
      f"{stats.hot_share(stats.firing_frequency(Hs)):.0%} of neurons give 80% of firings, "
      f"overlap of consecutive active sets {stats.consecutive_overlap(Hs):.2f} "
      f"(real model layer 1: {stats.consecutive_overlap(hs[1]):.2f})")

# %% [markdown]
# The same predictor recipe on the SYNTHETIC layer, with the accuracy cost measured as the
# relative error of the FFN output against the dense FFN (the sparse FFN runs the numba kernel
# on the predicted set):

# %%
# NBVAL_CHECK_OUTPUT
from teachkit.sparse.kernels import sparse_ffn_bundled
from teachkit.sparse.predictor import train_predictor
from teachkit.sparse.reference import dense_ffn_ref

Bsyn = syn.bundles[0]
p_syn = train_predictor(Xs[:1500], Hs[:1500] > 0, kind="lowrank", rank=32, epochs=10, lr=1e-2)
for t in (0.1, 0.3, 0.5):
    pred_mask = p_syn.predict_mask(Xs[1500:], t)
    r, prec = recall_precision(pred_mask, Hs[1500:] > 0)
    errs = []
    for x, m in zip(Xs[1500:1600], pred_mask[:100]):
        y = sparse_ffn_bundled(Bsyn, np.flatnonzero(m).astype(np.int64), x,
                               np.zeros(len(x), np.float32), gated=True)
        ref = dense_ffn_ref(Bsyn, x, gated=True)
        errs.append(np.linalg.norm(y - ref) / np.linalg.norm(ref))
    print(f"SYNTHETIC, threshold {t:.1f}: recall {r:.3f}, precision {prec:.3f}, computes "
          f"{pred_mask.mean():.1%} of neurons, FFN output relative error {np.mean(errs):.3f}")

# %%
viz.plot_power_law({"trained LM, layer 1": freqs["layer 1"],
                    "SYNTHETIC layer": stats.firing_frequency(Hs)},
                   title="real (trained) vs SYNTHETIC firing frequencies")

# %% [markdown]
# ## Exercises
#
# 1. `firing_frequency(H)`: for activations `H` of shape (tokens, neurons), return each neuron's
#    fraction of tokens with `H > 0`.
# 2. `recall_precision(pred, true)`: for boolean masks, return `(recall, precision)`.
# 3. `union_activity(H, window)`: cut the tokens into consecutive blocks of `window` tokens
#    (drop the remainder), and return the mean fraction of neurons active for at least one token
#    of a block.

# %%
def my_firing_frequency(H):
    raise NotImplementedError  # YOUR CODE HERE


_ = check.firing_frequency(my_firing_frequency)


# %%
def my_recall_precision(pred, true):
    raise NotImplementedError  # YOUR CODE HERE


_ = check.recall_precision(my_recall_precision)


# %%
def my_union_activity(H, window):
    raise NotImplementedError  # YOUR CODE HERE


_ = check.union_activity(my_union_activity)
