# %% [markdown]
# # 06 · DPO-Positive: when DPO lowers the chosen likelihood, and the fix
#
# DPO's loss depends only on the *difference* between the chosen and rejected log-ratios. It can
# fall while **both** log-probs fall, as long as the rejected one falls faster. Pal et al. (2024,
# "Smaug") showed this happens most on pairs that differ in only a few tokens, such as
# "2+2=4" against "2+2=5". There the chosen answer can end up *less* likely than under the
# reference while the pair accuracy climbs. Their fix is **DPO-Positive (DPOP)**: a penalty that
# applies as soon as the chosen log-prob drops below the reference.
#
# We reproduce the failure on the toy world's low-edit pairs (the right sum against the sum ± 1),
# then train DPO and DPOP on the same pairs with the same seed, and compare.

# %%
# NBVAL_CHECK_OUTPUT
import torch
import torch.nn.functional as F

from teachkit import check, viz
from teachkit.rlhf import dpo_loss, dpop_loss
from teachkit.rlhf.dpo_train import DPOConfig, pair_data, train_dpo
from teachkit.toy.generate import completion_logprobs
from teachkit.toy.world import load_world

torch.set_num_threads(1)
world = load_world()
low_edit = pair_data(world, "train", subset="low_edit")
print(f"{len(low_edit)} low-edit training pairs, for example:")
for i in range(4):
    print("  chosen", world.task.format(low_edit.prompts[i], low_edit.chosen[i], low_edit.chosen_mask[i]),
          "  rejected", world.task.format(low_edit.prompts[i], low_edit.rejected[i], low_edit.rejected_mask[i]))

# %% [markdown]
# ## 1. Why the chosen log-prob can fall
#
# Take `5+7= → 12<eos>` against `5+7= → 13<eos>`. In token terms:
#
# | position | chosen | rejected | in DPO's margin |
# |---|---|---|---|
# | 1 | `1` after `5+7=` | `1` after `5+7=` | identical: cancels exactly |
# | 2 | `2` after `5+7=1` | `3` after `5+7=1` | same context: pushes `2` up, `3` down |
# | 3 | `<eos>` after `…12` | `<eos>` after `…13` | *different* contexts, same token |
#
# Position 3 is the problem. DPO lowers log π(`<eos>` | …13). The two contexts differ in one token
# and share every weight, so lowering that probability also lowers log π(`<eos>` | …12), the
# chosen completion's last token. Smaug calls this the "wrong-way" gradient on the tokens after
# the edit. Nothing in DPO's loss resists it, as long as the rejected side falls further.
#
# ## 2. The DPOP loss
#
# DPOP adds the penalty $P = \max\big(0,\ \log\pi_{ref}(y_w) - \log\pi_\theta(y_w)\big)$. It is zero
# while the chosen log-prob is at or above the reference. We put it **inside the β bracket**
# (Smaug's revised Eq. 3):
#
# $$\mathcal L_{DPOP} = -\log\sigma\Big(\beta\big[(\pi_w - \text{ref}_w) - (\pi_l - \text{ref}_l) - \lambda P\big]\Big),\qquad \lambda = 50.$$
#
# Two other placements circulate in third-party code:
#
# - inside log σ but outside β, $-\log\sigma(\beta h - \lambda P)$, a reading of the paper's first
#   bracketing;
# - outside log σ as a plain additive term, $-\log\sigma(\beta h) + \lambda P$.
#
# The authors confirmed the first form after their July 2024 revision. It also behaves best: inside
# the sigmoid, the penalty's gradient carries the same weight σ(−β·z) as DPO's. It therefore fades
# once the pair is well separated. The additive form never stops pushing, and with λ = 50 outside β
# (the second form) the penalty swamps the preference term at the smallest dip.

# %%
# NBVAL_CHECK_OUTPUT
def dpop_loss_inline(pol_c, pol_r, ref_c, ref_r, beta=0.1, lam=50.0):
    margin = (pol_c - ref_c) - (pol_r - ref_r)
    penalty = torch.clamp(ref_c - pol_c, min=0.0)                 # > 0 only below the reference
    return -F.logsigmoid(beta * (margin - lam * penalty)).mean()


g = torch.Generator().manual_seed(0)
pol_c, pol_r, ref_c, ref_r = (-10 * torch.rand(16, generator=g) for _ in range(4))
print("inline == library:", torch.allclose(dpop_loss_inline(pol_c, pol_r, ref_c, ref_r),
                                           dpop_loss(pol_c, pol_r, ref_c, ref_r)))
ref_below = pol_c - torch.rand(16, generator=g)                   # every chosen above its reference
print("chosen above reference -> DPOP == DPO:",
      torch.allclose(dpop_loss(pol_c, pol_r, ref_below, ref_r), dpo_loss(pol_c, pol_r, ref_below, ref_r)))
print("λ = 0 -> DPOP == DPO:",
      torch.allclose(dpop_loss(pol_c, pol_r, ref_c, ref_r, lam=0.0), dpo_loss(pol_c, pol_r, ref_c, ref_r)))

# %% [markdown]
# ## 3. DPO against DPOP on the same low-edit pairs
#
# Both runs use the same pairs, seed, batches and learning rate (3e-4, large enough that DPO fits
# the pairs well). Only the loss differs. We track the pair metrics on the *training* pairs, the
# ones DPO is fitting, and the greedy accuracy on every prompt of the task.

# %%
runs, policies = {}, {}
for loss in ("dpo", "dpop"):
    cfg = DPOConfig(loss=loss, pairs="low_edit", lr=3e-4, steps=120, eval_every=20, monitor="train", seed=0)
    policies[loss.upper()], runs[loss.upper()] = train_dpo(world, cfg)
viz.plot_chosen_vs_reference(runs)

# %%
# NBVAL_CHECK_OUTPUT
for name, h in runs.items():
    print(name)
    for k in ("step", "reward_accuracy", "chosen_logratio", "chosen_below_ref", "greedy_gold_reward"):
        print(f"  {k:18s}", " ".join(f"{v:6.2f}" for v in h[k]))

# %% [markdown]
# Under DPO, the pair accuracy rises above 0.9, but the mean chosen log-ratio drops below 0 and
# stays there: the right answers are *less* likely than under the SFT model, on a third or more of
# the pairs. Under DPOP the chosen log-ratio stays at or above 0 the whole time. The penalty is
# almost never active (a few per cent of pairs dip, briefly), and the accuracy is as good.

# %%
dpo_h, dpop_h = runs["DPO"], runs["DPOP"]
assert dpo_h["reward_accuracy"][-1] > dpo_h["reward_accuracy"][1] and dpo_h["reward_accuracy"][-1] > 0.85
assert min(dpo_h["chosen_logratio"]) < -0.2, "DPO should push the chosen log-prob below the reference"
assert min(dpop_h["chosen_logratio"]) >= 0.0, "DPOP should keep the chosen log-prob at or above it"
assert dpo_h["chosen_below_ref"][-1] > 0.25 > dpop_h["chosen_below_ref"][-1]

# %% [markdown]
# ## 4. Where the chosen answer loses probability
#
# Split the change in log-prob by token position, for two-digit answers (`1`, digit, `<eos>`).
# The table in section 1 predicts the loss lands on the `<eos>` after the edited digit.

# %%
# NBVAL_CHECK_OUTPUT
two_digit = (low_edit.chosen_mask.sum(1) == 3) & (low_edit.rejected_mask.sum(1) == 3)
prompts, chosen, mask = low_edit.prompts[two_digit], low_edit.chosen[two_digit], low_edit.chosen_mask[two_digit]
with torch.no_grad():
    ref_tok = completion_logprobs(world.reference, prompts, chosen, mask)
    per_position = {name: (completion_logprobs(p, prompts, chosen, mask) - ref_tok).mean(0)
                    for name, p in policies.items()}
print(f"{int(two_digit.sum())} two-digit pairs; mean log π/π_ref of the chosen token at each position")
print("        first digit  edited digit  <eos>")
for name, d in per_position.items():
    print(f"{name:6s}" + "".join(f"{v:12.3f}" for v in d.tolist()))
assert per_position["DPO"][2] < -0.2 and per_position["DPO"][2] == per_position["DPO"].min()
assert per_position["DPOP"].min() > -0.1

# %% [markdown]
# The prediction holds. Under DPO most of the chosen answer's lost probability is on `<eos>`:
# after learning that "13" must not end, the model is less sure that "12" ends. DPOP holds
# `<eos>` at the reference and raises the edited digit instead.
#
# ## 5. The effect on the task: greedy accuracy

# %%
# NBVAL_CHECK_OUTPUT
sft_greedy = dpo_h["greedy_gold_reward"][0]
print(f"greedy task accuracy: SFT {sft_greedy:.2f}   DPO {dpo_h['greedy_gold_reward'][-1]:.2f}   "
      f"DPOP {dpop_h['greedy_gold_reward'][-1]:.2f}")
print(f"gold reward, sampled: SFT {dpo_h['gold_reward'][0]:.2f}   DPO {dpo_h['gold_reward'][-1]:.2f}   "
      f"DPOP {dpop_h['gold_reward'][-1]:.2f}")
print(f"KL to the reference:  DPO {dpo_h['kl_to_ref'][-1]:.2f}   DPOP {dpop_h['kl_to_ref'][-1]:.2f}")
assert dpop_h["greedy_gold_reward"][-1] > dpo_h["greedy_gold_reward"][-1] + 0.1
assert dpop_h["greedy_gold_reward"][-1] > sft_greedy

# %% [markdown]
# At this learning rate DPO's greedy accuracy ends *below* SFT's, despite more than 90% pair
# accuracy. It also moves further from the reference. DPOP turns the same pairs into a large gain
# in greedy accuracy, at a smaller KL.
#
# Caveats. At the small learning rate of notebook 05 (1e-5) DPO barely shows the problem: the
# failure needs pairs that are fitted hard. On pairs that differ in many tokens, DPOP's penalty is
# rarely active and DPOP ≈ DPO. The paper reports that λ anywhere in [5, 500] works about equally
# well.
#
# ## Exercises
#
# **Exercise 6.1.** Write `my_dpop_loss(pol_c, pol_r, ref_c, ref_r, beta, lam)`, DPOP with the
# penalty inside the β bracket. The checker rejects both of the other placements.

# %%
def my_dpop_loss(pol_c, pol_r, ref_c, ref_r, beta, lam):
    # YOUR CODE HERE
    raise NotImplementedError


_ = check.dpop_loss(my_dpop_loss)

# %% [markdown]
# **Exercise 6.2 (open).** Re-run section 3 with seeds 1 and 2, then with λ = 5 and λ = 500. Does
# the picture change?
#
# **Exercise 6.3 (open).** Train DPO on the *sampled* pairs only (`pairs="sampled"`). The chosen and
# rejected completions there often differ in more than one token. Is the chosen log-prob still
# pushed below the reference?
