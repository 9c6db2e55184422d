# %% [markdown] slideshow={"slide_type": "slide"}
# # 07 · TDPO: token-level DPO with a sequential forward KL
#
# DPO scores whole completions: a single number log π(y|x) per completion. But a language model
# writes one token at a time, choosing each from a distribution over the *whole vocabulary*.
# **Token-level DPO** (Zeng et al., ICML 2024, arXiv:2404.11999v5, §4) keeps DPO's pairs but also
# measures, at every position, how far the policy's full next-token distribution has drifted from
# the reference's: the *sequential KL*. It subtracts a difference of two of them from DPO's margin,
# the rejected completion's drift minus the chosen one's.
#
# This notebook builds the sequential KL, writes TDPO1 and TDPO2, and trains DPO, TDPO1 and TDPO2
# from the same start. It then compares how far each moves on the chosen and on the rejected
# completions, and what each buys in gold reward per unit of KL.

# %%
# NBVAL_CHECK_OUTPUT
import torch
import torch.nn.functional as F

from teachkit import check, viz
from teachkit.rlhf import dpo_loss, sequential_kl, tdpo_loss
from teachkit.rlhf.tdpo_train import TDPOConfig, train_tdpo
from teachkit.toy.generate import completion_logits
from teachkit.toy.world import load_world

torch.set_num_threads(1)
world = load_world()
tok = world.task.tokenizer
print(world.pairs)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The token-level view
#
# At every position the policy has a whole distribution. Here is the reference's for the completion
# `12<eos>` of `5+7=`: the top three tokens at each position.

# %%
# NBVAL_CHECK_OUTPUT
prompt = torch.tensor([tok.encode("5+7=")])
completion = torch.tensor([tok.encode("12<eos>")])
with torch.no_grad():
    probs = completion_logits(world.reference, prompt, completion).softmax(-1)[0]   # (T, V)
context = "5+7="
for t in range(completion.shape[1]):
    top = probs[t].topk(3)
    shown = ", ".join(f"{tok.decode([i])!r} {p:.2f}" for p, i in zip(top.values.tolist(), top.indices.tolist()))
    print(f"after {context!r:10s} {shown}")
    context += tok.decode(completion[0, t:t + 1])

# %% [markdown]
# DPO's sequence log-ratio is a sum over positions of the log-ratio *of the token that was written*:
# $\log\frac{\pi(y|x)}{\pi_{ref}(y|x)} = \sum_t \log\frac{\pi(y_t|x,y_{<t})}{\pi_{ref}(y_t|x,y_{<t})}$.
# It sees nothing of the rest of each distribution. The policy can move a lot of probability among
# the tokens that were *not* written without changing the loss at all.
#
# ## 2. The sequential KL
#
# TDPO measures the whole distribution at every position, in the forward direction, from the
# reference:
#
# $$D_{SeqKL}(x, y;\ \pi_{ref}\,\|\,\pi_\theta) = \sum_{t=1}^{|y|} \mathrm{KL}\big(\pi_{ref}(\cdot|x, y_{<t})\ \|\ \pi_\theta(\cdot|x, y_{<t})\big)
# = \sum_t \sum_v \pi_{ref}(v|\cdot)\,\big[\log\pi_{ref}(v|\cdot) - \log\pi_\theta(v|\cdot)\big].$$
#
# Mind the direction. This is the **forward KL, KL(π_ref ‖ π_θ)**: the average is taken under the
# *reference's* next-token distribution, at the prefixes of the pair's own completions (offline
# data, nothing is sampled). Section 3 shows why this direction appears. The KL in the RLHF
# objective, and on the x-axis of section 5's plots, is the other one, the **reverse KL,
# KL(π_θ ‖ π_ref)**, averaged over completions *sampled from the policy*.
#
# What the direction buys: the forward KL charges the policy heavily wherever the reference puts
# probability and the policy puts little (log π_θ → −∞ there), so it keeps the policy
# *mass-covering*: every token the reference would write stays possible. The reverse KL charges the
# policy only where the policy itself puts mass, so dropping some of the reference's tokens is
# cheap: it is *mode-seeking*.
#
# It needs the full logits (B, T, V) of both models, not just the log-probs of the written tokens.
# Padding positions are removed by *selecting*, before any arithmetic, so that a NaN in padding
# cannot leak.

# %%
# NBVAL_CHECK_OUTPUT
def sequential_kl_inline(policy_logits, ref_logits, mask):
    keep = mask.bool()[..., None]
    pol_logp = F.log_softmax(torch.where(keep, policy_logits, 0.0), dim=-1)
    ref_logp = F.log_softmax(torch.where(keep, ref_logits, 0.0), dim=-1)
    per_position = (ref_logp.exp() * (ref_logp - pol_logp)).sum(-1)        # (B, T)
    return torch.where(mask.bool(), per_position, 0.0).sum(-1)              # (B,)


g = torch.Generator().manual_seed(0)
pol, ref = torch.randn(4, 3, 14, generator=g), torch.randn(4, 3, 14, generator=g)
mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]])
print("inline == library:", torch.allclose(sequential_kl_inline(pol, ref, mask), sequential_kl(pol, ref, mask)))
print("zero at π = π_ref:", sequential_kl(ref, ref, mask).abs().max().item() < 1e-6)
nan_pol = torch.where(mask.bool()[..., None], pol, float("nan"))
print("NaN in padding does not leak:", torch.allclose(sequential_kl(nan_pol, ref, mask), sequential_kl(pol, ref, mask)))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. TDPO1 and TDPO2: where the sequential KL comes from
#
# Notebook 05 solved the RLHF objective for whole completions. TDPO solves it per token. The state
# is the prefix $s_t = (x, y_{<t})$ and the action is the next token z. At every prefix the policy
# maximises the reference's *advantage* minus a KL penalty on its next-token distribution:
#
# $$\max_\pi\ \mathbb E_{z\sim\pi(\cdot|s_t)}\big[A_{ref}(s_t, z)\big] - \beta\,\mathrm{KL}\big(\pi(\cdot|s_t)\,\|\,\pi_{ref}(\cdot|s_t)\big),$$
#
# where $A_{ref}(s_t, z) = Q_{ref}(s_t, z) - V_{ref}(s_t)$ says how much better token z is than the
# reference's average at that prefix. Exactly as in notebook 05's step 2, the maximiser and its
# inverse are
#
# $$\pi^*(z|s_t) = \frac{\pi_{ref}(z|s_t)\,e^{A_{ref}(s_t,z)/\beta}}{Z(s_t)}
# \quad\Longleftrightarrow\quad A_{ref}(s_t, z) = \beta\log\frac{\pi^*(z|s_t)}{\pi_{ref}(z|s_t)} + \beta\log Z(s_t).$$
#
# In notebook 05, β log Z(x) cancelled because both completions share the prompt x. Here it does
# not: after the first token where y_w and y_l differ, they pass through *different* prefixes, each
# with its own Z(s_t). The key line: an advantage averages to zero under the policy it belongs to,
# $\mathbb E_{z\sim\pi_{ref}}[A_{ref}(s_t, z)] = 0$. Average both sides of the equation above over
# $z\sim\pi_{ref}(\cdot|s_t)$:
#
# $$0 = -\beta\,\mathrm{KL}\big(\pi_{ref}(\cdot|s_t)\,\|\,\pi^*(\cdot|s_t)\big) + \beta\log Z(s_t)
# \quad\Longrightarrow\quad \beta\log Z(s_t) = \beta\,\mathrm{KL}\big(\pi_{ref}(\cdot|s_t)\,\|\,\pi^*(\cdot|s_t)\big).$$
#
# The unknown normaliser is a KL *from the reference*, because the average is under π_ref: that is
# why the forward direction appears. Summed over a completion, its total advantage is
# $\beta\sum_t\log\pi^*(y_t)/\pi_{ref}(y_t) + \beta\,D_{SeqKL}(x, y;\ \pi_{ref}\|\pi^*)$. The paper
# writes Bradley–Terry with these summed advantages; put in the policy π_θ for π* and the
# preference probability is σ(βz) with, for the summed log-ratios
# $m = \sum_t \log\pi_\theta(y_t)/\pi_{ref}(y_t)$ (exactly DPO's):
#
# $$\text{TDPO1:}\quad z = (m_w - m_l) - \big(D_{SeqKL}(y_l) - D_{SeqKL}(y_w)\big)$$
# $$\text{TDPO2:}\quad z = (m_w - m_l) - \alpha\big(D_{SeqKL}(y_l) - \mathrm{sg}[D_{SeqKL}(y_w)]\big)$$
# $$\mathcal L = -\log\sigma(\beta z).$$
#
# TDPO2 is the variant the authors recommend in the README of their code
# (github.com/Vance0124/Token-level-Direct-Preference-Optimization). Reading it: pushing the rejected completion away from
# the reference now *costs* margin, by its sequential KL. The stop-gradient (sg) means only the
# rejected side is held back, and α sets how hard. With α = 0 it is DPO. At π = π_ref every term
# is 0 and the loss is ln 2, as in DPO.

# %%
# NBVAL_CHECK_OUTPUT
def tdpo2_loss_inline(m_w, m_l, kl_w, kl_l, beta=0.1, alpha=0.5):
    return -F.logsigmoid(beta * ((m_w - m_l) - alpha * (kl_l - kl_w.detach()))).mean()


m_w, m_l, kl_w, kl_l = torch.randn(8, generator=g), torch.randn(8, generator=g), torch.rand(8, generator=g), torch.rand(8, generator=g)
print("inline == library:", torch.allclose(tdpo2_loss_inline(m_w, m_l, kl_w, kl_l), tdpo_loss(m_w, m_l, kl_w, kl_l)))
print("α = 0 is DPO:", torch.allclose(tdpo_loss(m_w, m_l, kl_w, kl_l, alpha=0.0),
                                      dpo_loss(m_w, m_l, torch.zeros(8), torch.zeros(8))))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. DPO, TDPO1 and TDPO2 from the same start
#
# `train_tdpo` is notebook 05's loop plus the sequential KLs. The reference's logits for every pair
# are computed once, and `variant=0` trains with DPO's loss while still *measuring* the KLs. All
# three runs use every training pair, the same seed, β = 0.1 and the same learning rate, 3e-5:
# three times notebook 05's, a rate at which DPO already drifts (section 5 shows it). TDPO2 uses
# α = 0.5, `TDPOConfig`'s default. We log the sequential KLs on the held-out pairs.

# %%
runs, policies = {}, {}
for name, variant in (("DPO", 0), ("TDPO1", 1), ("TDPO2", 2)):
    policies[name], runs[name] = train_tdpo(world, TDPOConfig(variant=variant, lr=3e-5, seed=0))
viz.plot_seq_kl(runs)

# %%
print("final values           SeqKL chosen  SeqKL rejected  gap (l − w)")
for name, h in runs.items():
    kc, kr = h["seq_kl_chosen"][-1], h["seq_kl_rejected"][-1]
    print(f"{name:8s}{kc:20.3f}{kr:16.3f}{kr - kc:13.3f}")
dpo_h, tdpo2_h = runs["DPO"], runs["TDPO2"]
assert dpo_h["seq_kl_rejected"][-1] > dpo_h["seq_kl_chosen"][-1]        # the rejected side runs away
assert dpo_h["seq_kl_rejected"][-1] > 1.5 * tdpo2_h["seq_kl_rejected"][-1]
gap = {name: h["seq_kl_rejected"][-1] - h["seq_kl_chosen"][-1] for name, h in runs.items()}
assert gap["TDPO1"] < gap["DPO"] and gap["TDPO2"] < gap["DPO"]
for side in ("seq_kl_chosen", "seq_kl_rejected"):                      # both of TDPO2's KLs: about half
    assert tdpo2_h[side][-1] < 0.65 * dpo_h[side][-1]

# %% [markdown]
# Under DPO the sequential KL grows on both sides. It grows fastest on the rejected completions,
# which DPO pushes away with nothing to stop it. TDPO1 subtracts both KLs. On this task they grow
# almost equally, so its correction nearly cancels and it behaves much like DPO. TDPO2 charges only
# for the rejected side. Both of its sequential KLs end about half the size of DPO's: it stays much
# closer to the reference on the pairs. (The gap between the two sides is smaller than DPO's for
# both TDPO variants.)
#
# ## 5. The trade-off between reward and KL
#
# Moving away from the reference is the price. Gold reward is what it buys. Below is each run's
# path through (KL to the reference, gold reward), from the SFT start (the black dot) to the end
# (the star). The x-axis is **KL(π_θ ‖ π_ref)** summed along completions *sampled from the policy*,
# the KL of the RLHF objective, not the sequential KL(π_ref ‖ π_θ) on the pairs of section 4.
#
# One learning rate is not a fair frontier for DPO, so we add a fourth run: DPO at notebook 05's
# rate, 1e-5.

# %%
_, dpo_slow_h = train_tdpo(world, TDPOConfig(variant=0, lr=1e-5, seed=0))
frontier = {**{f"{name}, lr 3e-5": h for name, h in runs.items()}, "DPO, lr 1e-5": dpo_slow_h}
viz.plot_reward_kl(frontier)
viz.plot_reward_kl(frontier, reward_key="greedy_gold_reward")

# %%
print("                gold (sampled)  gold (greedy)  KL(π_θ ‖ π_ref)")
for name, h in frontier.items():
    print(f"{name:16s}{h['gold_reward'][-1]:10.3f}{h['greedy_gold_reward'][-1]:15.3f}{h['kl_to_ref'][-1]:15.3f}")
assert tdpo2_h["gold_reward"][-1] > dpo_h["gold_reward"][-1] and tdpo2_h["kl_to_ref"][-1] < dpo_h["kl_to_ref"][-1]
assert tdpo2_h["greedy_gold_reward"][-1] > dpo_h["greedy_gold_reward"][-1] + 0.1
# at lr 1e-5, DPO reaches TDPO2's greedy accuracy (within 0.05) at a smaller KL
assert dpo_slow_h["greedy_gold_reward"][-1] > tdpo2_h["greedy_gold_reward"][-1] - 0.05
assert dpo_slow_h["kl_to_ref"][-1] < tdpo2_h["kl_to_ref"][-1]
assert tdpo2_h["gold_reward"][-1] > dpo_slow_h["gold_reward"][-1]   # ... and TDPO2 keeps more sampled gold
best = max(range(len(dpo_h["gold_reward"])), key=dpo_h["gold_reward"].__getitem__)
print(f"DPO at lr 3e-5: sampled gold peaks at step {int(dpo_h['step'][best])} "
      f"({dpo_h['gold_reward'][best]:.3f}), ends at {dpo_h['gold_reward'][-1]:.3f}; "
      f"KL {dpo_h['kl_to_ref'][best]:.2f} -> {dpo_h['kl_to_ref'][-1]:.2f}")
assert best < len(dpo_h["gold_reward"]) - 1 and dpo_h["kl_to_ref"][-1] > dpo_h["kl_to_ref"][best]

# %% [markdown]
# At lr 3e-5, TDPO2 ends with more gold reward at *less* KL than DPO. DPO at that rate has already
# passed its best point (the step is printed above) and slides back down while its KL keeps growing. But at
# lr 1e-5, DPO reaches about the same greedy accuracy as TDPO2 at a *smaller* KL; TDPO2 keeps more
# sampled gold reward, at a larger KL. Neither point dominates the other. So what this toy shows is
# not that TDPO2 has a better frontier: it is that TDPO2 **tolerates a learning rate at which DPO
# drifts**, because the rejected side's sequential KL holds it back. One seed, one toy
# task; the paper's frontier claim is about GPT-2 on IMDb. The exercises ask you to sweep α and
# the learning rate.
#
# ## What we learned
#
# - DPO sees only the log-prob of the written token at each position; the sequential KL measures
#   the whole next-token distribution, KL(π_ref ‖ π_θ), at every position of a completion.
# - Solving the RLHF objective per token leaves a normaliser Z(s_t) per prefix that no longer
#   cancels between y_w and y_l. Because the reference's advantage averages to zero under π_ref,
#   β log Z is a forward KL, and DPO's margin loses the difference of the two sequential KLs,
#   rejected minus chosen.
# - TDPO1 subtracts both KLs; on this task they grow together and it behaves much like DPO. TDPO2
#   stops the gradient on the chosen side and holds back the rejected side: both its KLs end about
#   half of DPO's.
# - Two KLs, two directions: the sequential KL(π_ref ‖ π_θ) on the pairs, and KL(π_θ ‖ π_ref) on
#   policy samples for the reward–KL plot.
# - At lr 3e-5 TDPO2 beats DPO; at lr 1e-5 DPO matches TDPO2's greedy accuracy at less KL, and
#   TDPO2 keeps more sampled gold reward. Compare methods over learning rates, not at one.
#
# ## Exercises
#
# The sequential KL and the TDPO2 loss are written out in sections 2 and 3; `check.sequential_kl`
# and `check.tdpo2_loss` still check versions of your own if you want to try them without looking.
#
# **Exercise 7.1: the reverse sequential KL.** Section 2 named the other direction, the reverse KL
# KL(π_θ ‖ π_ref) of the RLHF objective, and said it is *mode-seeking*. Write
# `my_reverse_sequential_kl(policy_logits, ref_logits, mask)` → (B,): the sum over unmasked
# positions of KL(π_θ(·|x, y_<t) ‖ π_ref(·|x, y_<t)) over the full vocabulary. Before you run the
# checker, compute both directions by hand for one position where the reference is (¾, ¼) and the
# policy has dropped the second token entirely, (1, 0): which one is finite? The checker's second
# property asks for exactly that number.

# %%
def my_reverse_sequential_kl(policy_logits, ref_logits, mask):
    # YOUR CODE HERE
    raise NotImplementedError


_ = check.reverse_sequential_kl(my_reverse_sequential_kl)

# %% [markdown]
# **Exercise 7.2: TDPO1.** Section 3 wrote TDPO2 in code. TDPO1, its origin in the derivation
# (Zeng et al., ICML 2024, arXiv:2404.11999v5, §4, the loss with the sequential KL difference at weight 1),
# differs in two ways: no α, and no stop-gradient, so the update also moves the chosen side's KL.
# Write `my_tdpo1_loss(m_w, m_l, kl_w, kl_l, beta)`. Before you run the checker, predict
# ∂L/∂kl_w compared with ∂L/∂kl_l: the checker looks at both gradients, not only the value.

# %%
def my_tdpo1_loss(m_w, m_l, kl_w, kl_l, beta):
    # YOUR CODE HERE
    raise NotImplementedError


_ = check.tdpo1_loss(my_tdpo1_loss)

# %% [markdown]
# **Exercise 7.3 (open).** Sweep α ∈ {0, 0.25, 0.5, 1, 2} for TDPO2 and plot the final (KL, gold)
# points. Where is α = 0 (DPO) on that curve? Then run DPO and TDPO2 at lr ∈ {1e-5, 3e-5, 1e-4}:
# which one is more robust to the learning rate?
