# %% [markdown] slideshow={"slide_type": "slide"}
# # 06 · DPO-Positive: when DPO lowers the chosen likelihood, and the fix
#
# DPO's loss depends only on the *difference* between the chosen and rejected log-ratios. It can
# fall while **both** log-probs fall, as long as the rejected one falls faster. Pal et al. (2024,
# "Smaug", arXiv:2402.13228v2, §3) showed this happens most on pairs that differ in only a few
# tokens, such as "2+2=4" against "2+2=5". There the chosen answer can end up *less* likely than
# under the reference while the pair accuracy climbs. Their fix is **DPO-Positive (DPOP)**: a penalty that
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
from teachkit.rlhf.dpo_train import DPOConfig, train_dpo
from teachkit.rlhf.offpolicy import pair_data
from teachkit.toy.generate import completion_logprobs
from teachkit.toy.world import load_world

torch.set_num_threads(1)
world = load_world()
low_edit = pair_data(world, "train", subset="low_edit")
print(f"{len(low_edit)} low-edit training pairs, for example:")
for i in range(4):
    print("  chosen", world.task.format(low_edit.prompts[i], low_edit.chosen[i], low_edit.chosen_mask[i]),
          "  rejected", world.task.format(low_edit.prompts[i], low_edit.rejected[i], low_edit.rejected_mask[i]))

# %% [markdown] slideshow={"slide_type": "slide"}
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
# chosen completion's last token. Pal et al. (arXiv:2402.13228v2, §3) derive the general case: on a
# pair that differs at one position, DPO's gradient can lower the chosen tokens after that position.
# Nothing in DPO's loss resists it, as long as the rejected side falls further.
#
# ## 2. The DPOP loss
#
# Notation, per pair: $\ell_w = \log\pi_\theta(y_w|x)$ and $\text{ref}_w = \log\pi_{ref}(y_w|x)$ are
# the summed log-probs of the chosen completion under the policy and under the reference;
# $\ell_l$ and $\text{ref}_l$ are the same for the rejected one. DPO's margin (notebook 05) is
#
# $$h = (\ell_w - \text{ref}_w) - (\ell_l - \text{ref}_l),\qquad \mathcal L_{DPO} = -\log\sigma(\beta h).$$
#
# DPOP adds the penalty $P = \max\big(0,\ \text{ref}_w - \ell_w\big)$: zero while the chosen
# log-prob is at or above the reference, growing as it drops below. Three placements of $P$
# circulate:
#
# - **(a)** inside the β bracket: $-\log\sigma(\beta z)$ with $z = h - \lambda P$;
# - **(b)** inside log σ but outside β: $-\log\sigma(\beta h - \lambda P)$;
# - **(c)** outside log σ, a plain additive term: $-\log\sigma(\beta h) + \lambda P$.
#
# We use **(a)** with λ = 50, the paper's value (Pal et al., arXiv:2402.13228v2, §4, Eq. 3). The
# authors released no training code. In the public issue thread abacusai/smaug#2 on GitHub they
# write that the bracketing of Eq. 3 was wrong in the first version and fixed in the revision of
# 3 July 2024 (v2), which puts the penalty inside the β bracket: form (a). The closed TRL pull request
# huggingface/trl#3864 and PaddleNLP's `DPOCriterion` implement (a) too. Form (b) appears in an MLX
# port, form (c) in the SamPO code (LuJunru/SamPO) and several MLX ports.
#
# How they differ: in (a) and (b) the penalty sits inside the sigmoid, so its gradient carries
# the same weight σ(−β·z) as DPO's and fades once the pair is well separated. Form (b) weighs the
# penalty 1/β = 10 times more than (a). Form (c) pushes with the full λ for as long as the chosen
# log-prob is below the reference, however well the pair is separated. Section 6 trains all three.

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
# **Try it.** One pair with a fixed margin h, while its chosen log-ratio ℓ_w − ref_w (the figure's
# h_w) moves: where does DPOP's loss leave DPO's, and how do β and λ change the kink? Right of 0
# the penalty is 0 and the two losses are equal: DPO's dashed line runs along DPOP's there. At a
# fixed h, DPO's loss does not depend on h_w at all: a flat line. (A static figure when no front
# end is attached.)

# %%
# NBVAL_IGNORE_OUTPUT
from teachkit import widgets

widgets.dpo_vs_dpop_widget()

# %% [markdown] slideshow={"slide_type": "slide"}
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
for name, h in runs.items():
    print(name)
    for k in ("step", "reward_accuracy", "chosen_logratio", "chosen_below_ref", "greedy_gold_reward"):
        print(f"  {k:18s}", " ".join(f"{v:6.2f}" for v in h[k]))

# %% [markdown]
# Under DPO, the pair accuracy climbs to about 0.9, but the mean chosen log-ratio drops below 0 and
# stays there: the right answers are *less* likely than under the SFT model, on a large share of
# the pairs (the range over the evaluations is printed below). Under DPOP the chosen log-ratio
# stays at or above 0 the whole time. The penalty is rarely active (only a small share of the
# pairs dips below the reference at any evaluation), and the pair accuracy is as good.

# %%
dpo_h, dpop_h = runs["DPO"], runs["DPOP"]
print(f"final pair accuracy: DPO {dpo_h['reward_accuracy'][-1]:.2f}, DPOP {dpop_h['reward_accuracy'][-1]:.2f}")
print(f"share of pairs with the chosen answer below the reference, steps 20-120: "
      f"DPO {min(dpo_h['chosen_below_ref'][1:]):.2f} to {max(dpo_h['chosen_below_ref'][1:]):.2f}, "
      f"DPOP at most {max(dpop_h['chosen_below_ref']):.2f}")
assert dpo_h["reward_accuracy"][-1] > dpo_h["reward_accuracy"][1] and dpo_h["reward_accuracy"][-1] > 0.85
assert min(dpo_h["chosen_logratio"]) < -0.2, "DPO should push the chosen log-prob below the reference"
assert min(dpop_h["chosen_logratio"]) >= 0.0, "DPOP should keep the chosen log-prob at or above it"
assert dpo_h["chosen_below_ref"][-1] > 0.25 > dpop_h["chosen_below_ref"][-1]
assert min(dpo_h["chosen_below_ref"][1:]) > 0.2 and max(dpop_h["chosen_below_ref"]) < 0.2
assert dpop_h["reward_accuracy"][-1] > dpo_h["reward_accuracy"][-1] - 0.05, "DPOP's pair accuracy is as good"

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Where the chosen answer loses probability
#
# Split the change in log-prob by token position, for two-digit answers (`1`, digit, `<eos>`).
# The table in section 1 predicts the loss lands on the `<eos>` after the edited digit.

# %%
two_digit = (low_edit.chosen_mask.sum(1) == 3) & (low_edit.rejected_mask.sum(1) == 3)
prompts, chosen, mask = low_edit.prompts[two_digit], low_edit.chosen[two_digit], low_edit.chosen_mask[two_digit]
with torch.no_grad():
    ref_tok = completion_logprobs(world.reference, prompts, chosen, mask)
    per_position = {name: (completion_logprobs(p, prompts, chosen, mask) - ref_tok).mean(0)
                    for name, p in policies.items()}
print(f"{int(two_digit.sum())} two-digit pairs; mean log π/π_ref of the chosen token at each position")
print("        first digit  edited digit  <eos>")
for name, d in per_position.items():
    print(f"{name:6s}" + "".join(f"{round(v, 3) + 0.0:12.3f}" for v in d.tolist()))
assert per_position["DPO"][2] < -0.2 and per_position["DPO"][2] == per_position["DPO"].min()
assert per_position["DPOP"].min() > -0.1

# %% [markdown]
# The prediction holds. Under DPO most of the chosen answer's lost probability is on `<eos>`:
# after learning that "13" must not end, the model is less sure that "12" ends. DPOP holds
# `<eos>` at the reference and raises the edited digit instead.
#
# ## 5. The effect on the task: greedy accuracy, over three seeds
#
# One evaluation of one run is a noisy number: DPO's greedy accuracy above swings from one
# evaluation to the next by more than 0.1 (the largest step is printed below). So we summarise each
# run by the mean of its last three evaluations (steps 80, 100 and 120), and repeat both runs with
# seeds 1 and 2. The seed sets the order of the batches; both methods start from the same SFT copy.

# %%
def late_mean(h, key):
    return sum(h[key][-3:]) / 3          # mean of the evaluations at steps 80, 100, 120


seed_runs = {"DPO": [dpo_h], "DPOP": [dpop_h]}
for seed in (1, 2):
    for loss in ("dpo", "dpop"):
        cfg = DPOConfig(loss=loss, pairs="low_edit", lr=3e-4, steps=120, eval_every=20, monitor="train", seed=seed)
        seed_runs[loss.upper()].append(train_dpo(world, cfg)[1])
late = {name: [late_mean(h, "greedy_gold_reward") for h in hs] for name, hs in seed_runs.items()}
sft_greedy = dpo_h["greedy_gold_reward"][0]
dpo_greedy = dpo_h["greedy_gold_reward"]
largest_step = max(abs(b - a) for a, b in zip(dpo_greedy[1:], dpo_greedy[2:]))
print(f"seed 0, DPO: largest change of greedy accuracy between two evaluations after step 0: {largest_step:.2f}")
assert largest_step > 0.1
print("final pair accuracy, seeds 0, 1, 2: " + "   ".join(
    f"{name} " + " ".join(f"{h['reward_accuracy'][-1]:.2f}" for h in hs) for name, hs in seed_runs.items()))
assert all(h["reward_accuracy"][-1] > 0.8 for h in seed_runs["DPO"])
print(f"greedy task accuracy, mean of steps 80-120 (SFT {sft_greedy:.2f})")
for name, hs in seed_runs.items():
    print(f"  {name:5s} seeds 0, 1, 2: " + "  ".join(f"{v:.2f}" for v in late[name])
          + f"   mean {sum(late[name]) / 3:.2f}"
          + f"   (sampled gold {sum(late_mean(h, 'gold_reward') for h in hs) / 3:.2f},"
          + f" KL {sum(late_mean(h, 'kl_to_ref') for h in hs) / 3:.2f})")
assert all(p > d + 0.1 for p, d in zip(late["DPOP"], late["DPO"])), "DPOP beats DPO on every seed"
assert min(late["DPOP"]) > sft_greedy + 0.1
assert abs(sum(late["DPO"]) / 3 - sft_greedy) < 0.1, "DPO stays within 0.1 of SFT on average"
late_kl = {name: sum(late_mean(h, "kl_to_ref") for h in hs) / 3 for name, hs in seed_runs.items()}
assert late_kl["DPO"] > late_kl["DPOP"], "DPO moves further from the reference"

# %% [markdown]
# On every seed DPOP ends well above DPO and above SFT. DPO, despite a pair accuracy near 0.9 on
# every seed, gains little or nothing in greedy accuracy over SFT: its mean over the three seeds
# ends within 0.1 of SFT's. It also moves further from the reference than DPOP does.
#
# ## 6. Does the placement of the penalty matter?
#
# Section 2 listed three placements. Train (b) and (c) on the same pairs with seed 0 and compare
# them with (a), the DPOP run above.

# %%
forms = {"(a) inside β": dpop_h}
for form, label in (("b", "(b) outside β"), ("c", "(c) outside log σ")):
    cfg = DPOConfig(loss="dpop", dpop_form=form, pairs="low_edit", lr=3e-4, steps=120, eval_every=20,
                    monitor="train", seed=0)
    forms[label] = train_dpo(world, cfg)[1]
print(f"{'seed 0, means of steps 80-120':30s}{'greedy':>8s}{'chosen log-ratio':>18s}{'chosen below ref':>18s}{'KL':>6s}")
for label, h in forms.items():
    print(f"  {label:28s}" + "".join(f"{late_mean(h, k):{w}.2f}" for k, w in
                                     (("greedy_gold_reward", 8), ("chosen_logratio", 18),
                                      ("chosen_below_ref", 18), ("kl_to_ref", 6))))
for h in forms.values():
    assert min(h["chosen_logratio"]) >= 0.0 and late_mean(h, "greedy_gold_reward") > late["DPO"][0] + 0.1

# %% [markdown]
# On this toy, at λ = 50, the three placements end alike on what this notebook is about: each
# keeps the chosen log-prob above the reference and each lifts greedy accuracy well above DPO's.
# (Their KLs differ more; one seed cannot tell whether that is the placement or the run.) So we
# cannot say from this experiment that one placement behaves best. The differences of section 2
# are in how hard the penalty pushes once it is active: (b) pushes 1/β times harder than (a), and
# (c) does not fade as the pair separates. Here the penalty is rarely active, so those differences
# barely show.
#
# Caveats. At the small learning rate of notebook 05 (1e-5, on all pairs) the mean chosen log-prob
# ended above where it started: the failure needs pairs that are fitted hard. Pal et al. tie the
# dip to pairs with a small edit distance; on pairs that differ in many tokens the penalty would
# then rarely be active, and DPOP would behave like DPO. This toy cannot test that: nearly all its
# pairs, sampled ones included, differ in one position (the cell below counts them). The paper
# uses λ = 50; in the abacusai/smaug#2 issue thread an author added that results were largely
# insensitive to λ anywhere in [5, 500].

# %%
# NBVAL_CHECK_OUTPUT
def positions_that_differ(pairs):
    chosen = torch.where(pairs.chosen_mask.bool(), pairs.chosen, -1)       # -1: past the end
    rejected = torch.where(pairs.rejected_mask.bool(), pairs.rejected, -1)
    return (chosen != rejected).sum(dim=1)


for subset in ("low_edit", "sampled"):
    counts = torch.bincount(positions_that_differ(pair_data(world, "train", subset=subset)), minlength=4)
    print(f"{subset:9s} pairs by positions that differ: " +
          ", ".join(f"{n}: {int(c)}" for n, c in enumerate(counts.tolist()) if c))
    assert counts[1] > 0.9 * counts.sum(), "almost every pair is a one-position edit"

# %% [markdown] slideshow={"slide_type": "slide"}
# ## What we learned
#
# - DPO constrains only the difference of two log-ratios. On pairs that differ in one token, the
#   chosen answer's log-prob can fall below the reference while the pair accuracy rises.
# - The loss lands on the tokens *after* the edit (here `<eos>`), through the weights the two
#   contexts share: Smaug's "wrong-way" gradient.
# - DPOP's penalty max(0, ref_w − ℓ_w) is zero until the chosen log-prob dips below the reference,
#   so it costs nothing when DPO behaves, and it stops the dip when DPO does not.
# - On three seeds DPOP turns the low-edit pairs into a large gain in greedy accuracy, where DPO
#   gains little or nothing over SFT on average. One evaluation of one run swings by 0.1 or more:
#   average over evaluations and seeds before drawing a conclusion.
# - Where the penalty sits, (a), (b) or (c), changes how hard it pushes; on this toy the three end
#   alike.
#
# ## Exercises
#
# The sequence-level DPOP loss is written out in section 2 (`dpop_loss_inline`);
# `check.dpop_loss` still checks a version of your own if you want to try it without looking.
#
# **Exercise 6.1: the penalty per token.** DPOP's penalty sees only the *sum* of the chosen
# log-ratio over the completion. Section 4 showed that DPO's damage sits on one token, `<eos>`:
# a policy can raise the edited digit and lower `<eos>` by as much, and the sum, hence DPOP's
# penalty, does not notice. A variant (ours, not the paper's: Eq. 3 of arXiv:2402.13228v2 applies the
# hinge to the sequence) puts the hinge on each chosen token and then sums:
#
# $$P_{\text{tok}} = \sum_t \max\big(0,\ \text{ref}_{w,t} - \ell_{w,t}\big),\qquad
#   \mathcal L = -\log\sigma\big(\beta\,(h - \lambda P_{\text{tok}})\big),$$
#
# with $\ell_{w,t}$ and $\text{ref}_{w,t}$ the per-token log-probs of the chosen completion and
# h DPO's margin from the summed log-ratios, as before. Write
# `my_dpop_token_loss(pol_c, pol_r, ref_c, ref_r, mask_c, mask_r, beta, lam)`: all four log-prob
# inputs are now **per token**, (B, T), with masks (B, T) for the chosen and the rejected
# completion (padding may hold NaN). Return the mean over pairs. Before you run the checker, work
# out the penalty for a chosen answer whose tokens sit +1 and −0.5 nats from the reference: the
# sequence-level penalty is 0, and yours is not.

# %%
def my_dpop_token_loss(pol_c, pol_r, ref_c, ref_r, mask_c, mask_r, beta, lam):
    # YOUR CODE HERE
    raise NotImplementedError


_ = check.dpop_token_loss(my_dpop_token_loss)

# %% [markdown]
# **Exercise 6.2 (open).** Re-run section 3 with λ = 5 and λ = 500, then section 6 with β = 0.01.
# Does the picture change? Does the placement start to matter?
#
# **Exercise 6.3 (open).** Train DPO on the *sampled* pairs only (`pairs="sampled"`). They differ in
# one position too (the count above), but their rejected answers are the SFT model's own mistakes
# rather than a fixed ±1. Is the chosen log-prob still pushed below the reference, and on which
# token? Then write a pair that differs in two positions by hand and predict where DPO's gradient
# lands before you check it with `completion_logprobs`.
