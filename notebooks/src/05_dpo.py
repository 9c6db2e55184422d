# %% [markdown] slideshow={"slide_type": "slide"}
# # 05 · DPO: from the RLHF objective to a classification loss
#
# PPO, ReMax and GRPO (notebooks 02–04) sample from the policy, score the samples with a reward
# model and push the policy towards the high scores. **Direct Preference Optimisation** (Rafailov et
# al., 2023, arXiv:2305.18290v3, §4: Eq. 4 for the optimal policy, Eq. 5 for the reward, Eq. 7 for
# the loss) skips the reward model and the sampling. It trains on a fixed set of *preference pairs*
# (a prompt, a chosen completion y_w and a rejected one y_l) with a loss that looks like logistic
# regression. Yet it optimises the same objective as RLHF.
#
# This notebook derives that loss step by step, writes it in a few lines, checks its value at the
# start of training, trains the toy world's SFT policy with it, and measures the gold reward before
# and after.

# %%
# NBVAL_CHECK_OUTPUT
import math

import torch
import torch.nn.functional as F

from teachkit import check, viz
from teachkit.rlhf import dpo_loss, implicit_rewards
from teachkit.rlhf.dpo_train import DPOConfig, train_dpo
from teachkit.rlhf.offpolicy import pair_data, pair_logps
from teachkit.toy.evaluate import evaluate_policy
from teachkit.toy.generate import generate
from teachkit.toy.world import load_world

torch.set_num_threads(1)
world = load_world()
print(world.task)
print(world.pairs)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The preference pairs
#
# The task is one-digit addition: the prompt `a+b=`, the completion the digits of the sum and
# `<eos>`. The gold reward is 1 for the exact answer and 0 otherwise. Each pair has a chosen
# completion with a higher gold reward than its rejected one. Most pairs are two samples of the SFT
# policy, labelled by the gold reward (pairs whose two samples score the same are dropped). The rest
# are hand-made *low-edit* pairs: the right answer against the same answer ± 1.

# %%
# NBVAL_CHECK_OUTPUT
train = world.pairs.train
for name, split in (("training", train), ("held-out", world.pairs.heldout)):
    n_low = int(split.low_edit.sum())
    print(f"{name:9s} {len(split)} pairs: {len(split) - n_low} sampled from the SFT policy, {n_low} low-edit")
assert int((~train.low_edit).sum()) > int(train.low_edit.sum())
for i in range(4):
    print("chosen  ", world.task.format(train.prompts[i], train.chosen[i], train.chosen_mask[i]),
          "   rejected", world.task.format(train.prompts[i], train.rejected[i], train.rejected_mask[i]),
          "   low-edit" if train.low_edit[i] else "   sampled")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. From the RLHF objective to the DPO loss

# %% [markdown] slideshow={"slide_type": "fragment"}
# **Step 1: the objective.** RLHF maximises reward while staying close to the reference policy
# π_ref (the SFT model):
#
# $$\max_\pi\; \mathbb E_{x,\,y\sim\pi(\cdot|x)}\big[r(x,y)\big] \;-\; \beta\,\mathrm{KL}\big(\pi(\cdot|x)\,\|\,\pi_{ref}(\cdot|x)\big).$$

# %% [markdown] slideshow={"slide_type": "fragment"}
# **Step 2: its maximiser has a closed form.** For one prompt, write the objective as
# $\sum_y \pi(y)\,[r(y) - \beta\log\pi(y)/\pi_{ref}(y)]$. Setting the derivative to zero under the
# constraint $\sum_y\pi(y)=1$ gives
#
# $$\pi^*(y|x) = \frac{1}{Z(x)}\,\pi_{ref}(y|x)\,\exp\!\big(r(x,y)/\beta\big),\qquad Z(x)=\sum_y \pi_{ref}(y|x)\,e^{r(x,y)/\beta}.$$
#
# Equivalently, the objective equals $-\beta\,\mathrm{KL}(\pi\,\|\,\pi^*) + \beta\log Z$, which is
# largest at π = π*.

# %% [markdown] slideshow={"slide_type": "fragment"}
# **Step 3: turn it around.** Take logs and solve for the reward:
#
# $$r(x,y) = \beta\log\frac{\pi^*(y|x)}{\pi_{ref}(y|x)} + \beta\log Z(x).$$
#
# Every reward corresponds to exactly one optimal policy, and the reverse holds too, up to a
# per-prompt constant β log Z(x).

# %% [markdown] slideshow={"slide_type": "fragment"}
# **Step 4: the preference model.** Bradley–Terry says a labeller prefers y_w to y_l with
# probability $\sigma(r(x,y_w) - r(x,y_l))$. Substitute step 3 into it. The unknown $\beta\log Z(x)$
# is the same for both completions of a prompt, so it **cancels**, and the preference is written
# through the optimal policy π* alone:
#
# $$P(y_w \succ y_l) = \sigma\Big(\beta\log\frac{\pi^*(y_w|x)}{\pi_{ref}(y_w|x)} - \beta\log\frac{\pi^*(y_l|x)}{\pi_{ref}(y_l|x)}\Big).$$

# %% [markdown] slideshow={"slide_type": "fragment"}
# **Step 5: maximum likelihood.** We do not know π*, so put a trainable policy π_θ in its place and
# fit it to the labelled pairs:
#
# $$\mathcal L_{DPO}(\theta) = -\,\mathbb E_{(x,y_w,y_l)}\;\log\sigma\Big(\beta\big[\log\tfrac{\pi_\theta(y_w|x)}{\pi_{ref}(y_w|x)} - \log\tfrac{\pi_\theta(y_l|x)}{\pi_{ref}(y_l|x)}\big]\Big).$$
#
# No reward model and no sampling. The log-probabilities are summed over the completion tokens:
# log π(y|x) = Σ_t log π(y_t | x, y_<t).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. The loss in code
#
# Each pair needs four numbers: the summed log-probs of the chosen and the rejected completion,
# under the policy and under the reference.

# %%
# NBVAL_CHECK_OUTPUT
def dpo_loss_inline(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.1):
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)   # log-ratio margin h
    return -F.logsigmoid(beta * margin).mean()


g = torch.Generator().manual_seed(0)
four = [-10 * torch.rand(32, generator=g) for _ in range(4)]
print("inline == library:", torch.allclose(dpo_loss_inline(*four), dpo_loss(*four)))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. The implicit reward
#
# Step 3 defines a reward for any policy: $\hat r(x,y) = \beta\log\pi_\theta(y|x)/\pi_{ref}(y|x)$.
# DPO trains a reward model hidden inside the policy. Two quantities are worth watching: the
# **reward accuracy**, the fraction of pairs with $\hat r_w > \hat r_l$, and the **margin**
# $\hat r_w - \hat r_l = \beta h$, with h the log-ratio margin of section 3. The gradient of one
# pair's loss is
#
# $$\nabla_\theta\mathcal L = -\beta\,\sigma(\hat r_l - \hat r_w)\,\big[\nabla_\theta\log\pi_\theta(y_w|x) - \nabla_\theta\log\pi_\theta(y_l|x)\big].$$
#
# A pair the implicit reward already ranks correctly gets a small weight, and a misranked pair a
# large one. The loss constrains only the *difference* of the two log-ratios, which notebook 06
# comes back to.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. The first step: the loss is ln 2
#
# The policy starts as a copy of the reference, so every log-ratio is 0 and the loss is
# −log σ(0) = ln 2. This makes a free unit test for any DPO code. The gradient is not zero, though:
# each pair pulls with weight β·σ(0) = β/2.

# %%
# NBVAL_CHECK_OUTPUT
policy = world.new_policy()
pairs = pair_data(world, "train")                     # reference log-probs computed once
pol_c, pol_r = pair_logps(policy, pairs)
loss0 = dpo_loss_inline(pol_c, pol_r, pairs.ref_chosen_logps, pairs.ref_rejected_logps)
loss0.backward()
grad_norm = torch.sqrt(sum((p.grad ** 2).sum() for p in policy.parameters()))
print(f"loss at the start: {loss0.item():.6f}   ln 2 = {math.log(2):.6f}")
print("gradient is non-zero:", grad_norm.item() > 0)
assert abs(loss0.item() - math.log(2)) < 1e-6

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Training
#
# `train_dpo` is the loop from sections 3 and 5. Each step draws 64 pairs, runs one forward pass
# over the chosen and rejected completions, and takes an AdamW step. The reference log-probs are
# computed once. Every 20 steps it evaluates the policy on the held-out pairs and on fresh samples.
#
# The learning rate is small (1e-5). Adam moves every weight by about the learning rate at each
# step, and DPO's pressure to separate the pairs has no limit. At three times this rate DPO passes
# its best gold reward early in the run and then drifts away from it (notebook 07 measures that);
# Exercise 5.3 asks you to try ten times the rate.

# %%
cfg = DPOConfig()
print(f"steps {cfg.steps}, batch {cfg.batch_size} pairs, lr {cfg.lr:g}, β {cfg.beta}")
policy, history = train_dpo(world, cfg)
viz.plot_preference_training(history)

# %% [markdown]
# The loss starts at ln 2 and falls, and the reward accuracy and the margin rise. The rejected
# log-prob falls all the way. The chosen log-prob rises for the first half of the run, then turns
# and falls back towards where it started: the margin keeps growing, but in the second half it is
# bought by pushing the rejected answers down while the chosen answers *lose* probability too.
# Notebook 06 makes this fall sharper.

# %%
print(f"{'step':16s}", " ".join(f"{int(v):7d}" for v in history["step"]))
for k in ("dpo_loss", "reward_accuracy", "reward_margin", "chosen_logps", "rejected_logps"):
    print(f"{k:16s}", " ".join(f"{v:7.3f}" for v in history[k]))
assert history["dpo_loss"][-1] < history["dpo_loss"][0] - 0.01
assert history["reward_accuracy"][-1] > 0.5 and history["reward_margin"][-1] > 0
chosen = history["chosen_logps"]
peak = max(range(len(chosen)), key=chosen.__getitem__)
assert 0 < peak < len(chosen) - 1 and chosen[-1] < chosen[peak] - 0.03, "chosen log-prob: up, then down"
assert history["rejected_logps"][-1] < history["rejected_logps"][0] - 0.5

# %% [markdown]
# At step 0 every margin is exactly 0, so no pair counts as ranked correctly. After that the held-out
# accuracy stops at the same value from step 20 on. Why? Sort the held-out pairs by how the rejected
# answer is wrong: one too many (+1) or one too few (−1).

# %% slideshow={"slide_type": "notes"}
def error_of_rejected(pairs):
    """Rejected answer minus the right answer, per pair (None when it is not a number)."""
    answers = world.task.answers(pairs.prompts)
    out = []
    for i in range(len(pairs)):
        text = world.task.tokenizer.decode(pairs.rejected[i][pairs.rejected_mask[i].bool()]).replace("<eos>", "")
        out.append(int(text) - int(answers[i]) if text.isdigit() else None)
    return out


heldout = pair_data(world, "heldout")
with torch.no_grad():
    rw_c, rw_r = implicit_rewards(*pair_logps(policy, heldout), heldout.ref_chosen_logps,
                                  heldout.ref_rejected_logps, beta=cfg.beta)
errors = error_of_rejected(heldout)
train_errors = error_of_rejected(pair_data(world, "train"))
rejected_shift = {}
for e in (+1, -1):
    pick = torch.tensor([x == e for x in errors])
    rejected_shift[e] = (rw_r[pick] / cfg.beta).mean().item()      # mean log π/π_ref of y_l
    print(f"rejected = answer {e:+d}: {int(pick.sum()):3d} held-out pairs, "
          f"ranked right {(rw_c[pick] > rw_r[pick]).float().mean().item():.2f}, "
          f"mean log π/π_ref of the rejected answer {rejected_shift[e]:+.2f}; "
          f"{train_errors.count(e)} such training pairs")
assert rejected_shift[+1] < 0 < rejected_shift[-1]
others = sum(x not in (+1, -1) for x in errors)
print(f"the other {others} of {len(errors)} held-out pairs reject an answer further off, or not a number")
print(f"share of training pairs that reject a +1 answer: {train_errors.count(+1) / len(train_errors):.2f}")
assert others + sum(x in (+1, -1) for x in errors) == len(errors)
assert train_errors.count(+1) > train_errors.count(-1)

# on the -1 pairs: log π of the right answer against log π of the -1 answer, before and after
minus = torch.tensor([x == -1 for x in errors])
with torch.no_grad():
    pol_w, pol_l = pair_logps(policy, heldout)
ref_gap = (heldout.ref_chosen_logps - heldout.ref_rejected_logps)[minus]
pol_gap = (pol_w - pol_l)[minus]
print(f"-1 pairs, log π(right answer) − log π(−1 answer): SFT mean {ref_gap.mean().item():+.2f}, "
      f"DPO mean {pol_gap.mean().item():+.2f}; share of pairs with the right answer ahead: "
      f"SFT {(ref_gap > 0).float().mean().item():.2f}, DPO {(pol_gap > 0).float().mean().item():.2f}")
assert bool((ref_gap > 0).all()) and (pol_gap > 0).float().mean().item() > 0.6

# %% [markdown]
# The SFT model's typical mistake is "one too many" (it writes 13 for 5+7), so most of the
# training pairs reject a +1 answer (the share is printed above). DPO pushes those down: log π of
# the +1 answers falls well below the reference. The probability they lose does not all go to the
# right answer. The neighbouring *wrong* answer, one too few, gains probability on the held-out −1
# pairs (its mean log-ratio is positive), and those pairs end up ranked wrong by the implicit
# reward. Which of the two answers the model is likelier to write is decided by log π itself, not
# by log π/π_ref, and there the right answer started well ahead of the −1 answer on every one of
# these pairs. DPO narrows that lead, but on most of the pairs the right answer stays ahead (the
# last line above), and the greedy answers still improve (section 7). Still, the implicit reward
# has partly learned "smaller is better" rather than "correct is better". Razin et al.
# ("Unintentional Unalignment: Likelihood Displacement in Direct Preference Optimization",
# arXiv:2410.08847v4, abstract) name the sharper case *likelihood displacement*: the chosen answer's
# own probability falls during training, and its mass can go to unintended completions. Notebook 06
# looks at that case.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Gold reward before and after
#
# The implicit reward is only a proxy. The gold reward, written as code, is the real test. We
# evaluate on every prompt of the task, each repeated (the counts are printed), both sampling at
# temperature 1 and decoding greedily. The KL to the reference, KL(π_θ ‖ π_ref) summed along the
# sampled completions, shows how far the policy moved.

# %%
before = evaluate_policy(world, world.reference, seed=0)
after = evaluate_policy(world, policy, seed=0)
before_greedy = evaluate_policy(world, world.reference, greedy=True)["gold_reward"]
after_greedy = evaluate_policy(world, policy, greedy=True)["gold_reward"]
print(f"gold reward (sampled): SFT {before['gold_reward']:.3f} -> DPO {after['gold_reward']:.3f}")
print(f"gold reward (greedy):  SFT {before_greedy:.3f} -> DPO {after_greedy:.3f}")
print(f"KL to the reference:   {after['kl_to_ref']:.3f}")
print(f"{int(after['n'])} answers per evaluation: {len(world.task.all_prompts())} prompts, "
      f"each {int(after['n']) // len(world.task.all_prompts())} times")
assert after["gold_reward"] > before["gold_reward"] and after_greedy > before_greedy + 0.1

# %% [markdown]
# A few greedy answers before and after:

# %%
prompts = world.task.all_prompts()[[19, 37, 48, 66, 75, 88]]
for name, model in (("SFT", world.reference), ("DPO", policy)):
    print(name)
    r = generate(model, prompts, world.task.max_new_tokens, greedy=True)
    world.task.show(r.prompts, r.completions, r.mask)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. Summary
#
# - The RLHF objective has a closed-form optimum, so the reward can be written in terms of the
#   optimal policy. Bradley–Terry then turns the preference data into a loss on the policy alone.
# - At the start the loss is ln 2 and the implicit-reward margin is 0.
# - DPO needs no sampling and no reward model, only two models (policy and frozen reference) and
#   the pairs.
# - Watch the chosen log-prob. DPO rewards the *difference*, and on pairs that differ in one token
#   the chosen answer can lose probability too. That is notebook 06.
#
# ## Exercises
#
# The DPO loss itself is written out in section 3 (`dpo_loss_inline`); `check.dpo_loss` still
# checks a version of your own if you want to try it without looking.
#
# **Exercise 5.1: IPO.** DPO's loss −log σ(βh) keeps falling as the margin h grows, and never
# reaches 0. On pairs whose preference is deterministic (the chosen answer always wins), the loss
# is lowest at h = ∞: nothing stops the margin, however large β is. The cell below prints the loss
# and the per-pair gradient weight β·σ(−βh) as the margin grows.

# %%
# NBVAL_CHECK_OUTPUT
beta = 0.1
margins = torch.tensor([0.0, 10.0, 20.0, 50.0, 100.0], dtype=torch.float64)
dpo_losses, weights = F.softplus(-beta * margins), beta * torch.sigmoid(-beta * margins)
for h, loss, weight in zip(margins.tolist(), dpo_losses.tolist(), weights.tolist()):
    print(f"h = {h:5.1f}: DPO loss {loss:.3g}, gradient weight {weight:.3g}")
assert bool((weights > 0).all()) and bool((weights[1:] < weights[:-1]).all()), "the weight falls but never reaches 0"

# %% [markdown]
# The weight shrinks but stays positive, so the margin only ever grows. Azar et al.
# ("A General Theoretical Paradigm to Understand Learning from Human Preferences",
# arXiv:2310.12036v2, §4.2 for this argument, §5 for the fix and Eq. 17 for the loss below) replace
# the logistic loss with a squared error that pulls h towards a finite target. With their τ written
# as our β, **IPO** (Identity Preference Optimisation) minimises, averaged over pairs,
#
# $$\mathcal L_{\text{IPO}} = \Big(h - \frac{1}{2\beta}\Big)^2,\qquad
#   h = \log\frac{\pi_\theta(y_w)}{\pi_{ref}(y_w)} - \log\frac{\pi_\theta(y_l)}{\pi_{ref}(y_l)} .$$
#
# Write `my_ipo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
# ref_rejected_logps, beta)`, with (B,) summed log-probs as in section 3. Before you run the
# checker, work out what the loss is at π = π_ref and where its minimum lies: the first two
# checks test exactly that. A smaller β (a looser leash) means a larger target margin.

# %%
def my_ipo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    # YOUR CODE HERE
    raise NotImplementedError


_ = check.ipo_loss(my_ipo_loss)

# %% [markdown]
# **Exercise 5.2 (open).** Derive step 2 yourself. Add a Lagrange multiplier for Σ_y π(y) = 1 and
# differentiate with respect to π(y).
#
# **Exercise 5.3 (open).** Re-run section 6 with `DPOConfig(lr=1e-4)`. What happens to the reward
# accuracy, the greedy gold reward and the KL? Why does a larger learning rate hurt DPO more than
# SFT?
