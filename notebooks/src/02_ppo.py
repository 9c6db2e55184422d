# %% [markdown] slideshow={"slide_type": "slide"}
# # 02 · PPO for RLHF, from scratch
#
# The toy world of notebook 01 gives us an SFT policy that adds two digits right only part of the
# time (notebook 01 printed how often; section 6 prints it again), and a reward model trained on
# preference pairs. This notebook improves the policy with the
# algorithm of InstructGPT: **PPO** against the reward model, with a KL leash to the SFT policy.
#
# We build each piece in view and check it against `teachkit.rlhf`. Section 5 then writes one whole
# PPO iteration in a single cell and checks that it is, bit for bit, the first iteration of the
# library's loop `train_ppo`, which section 6 uses to train.
#
# Sources: the clipped surrogate is Eq. (7) and the iteration is Algorithm 1 (§5) of Schulman et al.
# 2017 (arXiv:1707.06347v2); GAE is Eq. (16) (§3) of Schulman et al. 2015 (arXiv:1506.02438v6); the
# KL-penalised RLHF objective is Eq. (2) of Ouyang et al. 2022 (InstructGPT, arXiv:2203.02155v1,
# §3.5), whose "PPO" models set its pretraining coefficient γ to 0, as we do.

# %%
import torch

from teachkit import check, viz
from teachkit.toy.evaluate import evaluate_policy
from teachkit.toy.generate import completion_logprobs, generate
from teachkit.toy.world import load_world

torch.set_num_threads(1)
world = load_world()
task = world.task
print(world)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. Four models
#
# PPO for RLHF holds four networks of (here) the same architecture:
#
# | model | trainable? | role |
# |---|---|---|
# | **policy** π_θ | yes | writes the answers; starts as a copy of the SFT policy |
# | **critic** V_φ | yes | predicts, at each position, the reward still to come (a value head) |
# | **reference** π_ref | no | the SFT policy, frozen: the KL leash is measured against it |
# | **reward model** r | no | scores a finished answer: the *proxy* for what we want |
#
# The **gold reward** (1 if the sum is right, else 0) is never shown to the training loop. We only
# use it to judge the result, the way a human evaluation judges a real RLHF run.

# %%
# NBVAL_CHECK_OUTPUT
policy = world.new_policy()
reference, reward_model = world.reference, world.reward_model
count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
print(f"policy {count(policy):,} · reference {count(reference):,} · reward model {count(reward_model):,} parameters")
g = torch.Generator().manual_seed(0)
prompts = task.sample_prompts(8, g)
roll = generate(policy, prompts, task.max_new_tokens, generator=g)
task.show(roll.prompts, roll.completions, roll.mask)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. The reward, token by token
#
# RLHF treats writing an answer as an episode: the state is the prompt plus the tokens so far, the
# action is the next token. The reward model scores only the finished answer, so the reward at
# every position is 0 except at the last token. We add a penalty at *every* token for moving away
# from the reference. Two definitions first:
#
# * **π_old** is the policy as it was when it wrote this batch of answers. PPO then takes several
#   gradient steps on the same batch, so the policy being trained, π_θ, drifts away from π_old;
#   the rewards and advantages are computed once, with π_old.
# * The **k1 estimator** of KL(π_old ‖ π_ref) is the log-ratio of the token actually written,
#   log π_old(y_t) − log π_ref(y_t): its average over tokens sampled from π_old is exactly the KL,
#   though a single token's value can be negative (J. Schulman, "Approximating KL Divergence", blog
#   post of 7 March 2020, joschu.net/blog/kl-approx.html, names it k1 beside the k2 and k3 of
#   notebook 04).
#
# The per-token reward is then
# $$ r_t = -\beta\,\big(\log\pi_{\text{old}}(y_t) - \log\pi_{\text{ref}}(y_t)\big) + \mathbb 1[t = \text{last}]\; r_\phi(x, y). $$
#
# Summed over the episode, the return is $r_\phi(x,y) - \beta \log\frac{\pi(y|x)}{\pi_{\text{ref}}(y|x)}$, whose
# expectation is the KL-regularised objective $\mathbb E[r_\phi] - \beta\,\mathrm{KL}(\pi\,\|\,\pi_{\text{ref}})$.

# %%
def per_token_rewards(scores, logp, ref_logp, mask, beta):
    """−β·(logp − ref_logp) at every token, plus the score at the last real token; 0 after it."""
    rewards = -beta * (logp - ref_logp)
    last = mask.sum(1).long() - 1
    rewards[torch.arange(len(scores)), last] += scores
    return torch.where(mask.bool(), rewards, torch.zeros(()))


g = torch.Generator().manual_seed(1)
roll = generate(policy, task.sample_prompts(64, g), task.max_new_tokens, generator=g)
mask = roll.mask
with torch.no_grad():
    old_logp = completion_logprobs(policy, roll.prompts, roll.completions, mask)
    ref_logp = completion_logprobs(reference, roll.prompts, roll.completions, mask)
    scores = world.proxy_reward(roll.prompts, roll.completions, mask)
rewards = per_token_rewards(scores, old_logp, ref_logp, mask, beta=0.5)

# %%
# NBVAL_CHECK_OUTPUT
print("rewards of the first 3 episodes (policy = reference, so the KL part is 0):")
print(rewards[:3].numpy().round(3) + 0.0)  # + 0.0 turns -0.0 into 0.0
print("mask:")
print(mask[:3].numpy())

# %% [markdown]
# The KL part is 0 only because the policy still *is* the reference. To see it, nudge a copy of the
# policy (small random changes to every weight, standing in for a few training steps) and rebuild
# the rewards of the same answers. Every real token now pays −β·(log π_old − log π_ref): a
# token the moved policy likes more than the reference costs a little, one it likes less earns a little.
# Where both models are almost sure of a token (π_ref(y_t) close to 1, printed last), the nudge
# hardly changes its probability and its KL term rounds to 0.00.

# %%
# NBVAL_CHECK_OUTPUT
import copy  # noqa: E402

nudged = copy.deepcopy(policy)
gen = torch.Generator().manual_seed(3)
with torch.no_grad():
    for p in nudged.parameters():
        p.add_(0.05 * torch.randn(p.shape, generator=gen))
    nudged_logp = completion_logprobs(nudged, roll.prompts, roll.completions, mask)
nudged_rewards = per_token_rewards(scores, nudged_logp, ref_logp, mask, beta=0.5)
kl_part = per_token_rewards(torch.zeros_like(scores), nudged_logp, ref_logp, mask, beta=0.5)
print("−β·KL_t of the first 3 episodes under the nudged policy:")
print(kl_part[:3].numpy().round(2) + 0.0)
print("their full rewards (the score is added at the last token):")
print(nudged_rewards[:3].numpy().round(2) + 0.0)
print("the answers, and π_ref(y_t) of their tokens (0 on the padding):")
task.show(roll.prompts[:3], roll.completions[:3], mask[:3], rewards=scores[:3])
print(torch.where(mask[:3].bool(), ref_logp[:3].exp(), torch.zeros(())).numpy().round(3))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Who gets the credit? The critic and GAE
#
# A token's **advantage** says how much better the episode went than the critic expected at that
# point. The one-step version is the TD error $\delta_t = r_t + \gamma V_{t+1} - V_t$; generalised
# advantage estimation (GAE) averages the k-step versions with weights $\lambda^k$:
#
# $$ \hat A_t = \sum_{k\ge 0} (\gamma\lambda)^k \delta_{t+k} = \delta_t + \gamma\lambda \hat A_{t+1}, \qquad R_t = \hat A_t + V_t. $$
#
# λ = 1 gives the Monte-Carlo return minus the value (unbiased, noisy); λ = 0 trusts the critic
# completely (quiet, biased by its errors). The recursion runs backwards; beyond the end of a
# sequence there is nothing, so the bootstrap value there is 0. Padding may hold anything, even
# NaN, so we *select* real tokens first.
#
# The critic is a copy of the reward model: its value head reads the prompt and the tokens so far.
# Position $P+t-1$ has seen the prompt and $y_{<t}$, so it holds $V_t$, the value *before* token
# $t$ is chosen (the same shift by one as for the log-probs).

# %%
def my_gae(rewards, values, mask, gamma=1.0, lam=0.95):
    keep = mask.bool()
    r = torch.where(keep, rewards, torch.zeros(()))
    v = torch.where(keep, values, torch.zeros(()))      # V = 0 after the end
    T = r.shape[1]
    adv = torch.zeros_like(r)
    running = torch.zeros(r.shape[0])
    for t in reversed(range(T)):
        next_v = v[:, t + 1] if t + 1 < T else torch.zeros(r.shape[0])
        delta = r[:, t] + gamma * next_v - v[:, t]
        running = delta + gamma * lam * running
        adv[:, t] = running
    adv = torch.where(keep, adv, torch.zeros(()))
    return adv, torch.where(keep, adv + v, torch.zeros(()))


from teachkit.rlhf import gae, whiten  # noqa: E402

critic = copy.deepcopy(reward_model)
P, T = roll.prompts.shape[1], roll.completions.shape[1]
with torch.no_grad():
    values = critic.values(torch.cat([roll.prompts, roll.completions], 1))[:, P - 1:P + T - 1]
adv, ret = my_gae(rewards, values, mask)
lib_adv, lib_ret = gae(rewards, values, mask, gamma=1.0, lam=0.95)
assert torch.allclose(adv, lib_adv) and torch.allclose(ret, lib_ret)

# %%
# NBVAL_CHECK_OUTPUT
print("the notebook's GAE equals teachkit.rlhf.gae:", torch.allclose(adv, lib_adv) and torch.allclose(ret, lib_ret))
print("advantages of episode 0:", adv[0].numpy().round(3), " returns:", ret[0].numpy().round(3))

# %% [markdown]
# **Whitening.** The scale of the reward model is arbitrary, so PPO rescales the advantages of a
# batch to mean 0 and standard deviation 1 (over real tokens only). The sign of each advantage
# relative to the batch is what matters. Like TRL, `whiten` divides by the Bessel-corrected
# variance Σ(x − x̄)²/(n − 1) over the n real tokens, so the plain mean of squares printed below,
# Σ(x − x̄)²/n, comes out as (n − 1)/n, not 1.

# %%
# NBVAL_CHECK_OUTPUT
adv_w = whiten(adv, mask)
from teachkit.rlhf import masked_mean  # noqa: E402

n = int(mask.sum())
print(f"after whitening: mean {round(masked_mean(adv_w, mask).item(), 4) + 0.0:.4f}, "
      f"mean of squares {masked_mean(adv_w ** 2, mask).item():.4f} = (n − 1)/n = {(n - 1) / n:.4f} "
      f"for n = {n} real tokens")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. The clipped losses
#
# After sampling we take several gradient steps on the same batch. The samples came from the
# *old* policy, so each token's contribution is reweighted by the ratio $\rho_t = \pi_\theta(y_t)/\pi_{\text{old}}(y_t)$.
# PPO's surrogate takes the pessimistic side of the clipped and unclipped objectives:
#
# $$ L^{\pi} = \operatorname{masked\_mean}\Big(\max\big(-\hat A_t\rho_t,\; -\hat A_t\,\mathrm{clip}(\rho_t, 1-\epsilon, 1+\epsilon)\big)\Big). $$
#
# Once a token's ratio ρ_t has left [1 − ε, 1 + ε] on the side its advantage asks for (above
# 1 + ε for A > 0, below 1 − ε for A < 0), the clipped branch wins and its gradient is 0: one batch
# cannot drag the policy far. That limit is *relative*: with ε = 0.2 a token at π_old = 0.5 may
# move to 0.6, one at π_old = 0.01 only to 0.012.
#
# The critic is fitted to the returns with a loss that is clipped too, but in *absolute* terms:
# V may move at most ε_V (`value_clip_eps`; 0.2, like ε, in `train_ppo`) away from V_old, whatever
# the scale of V:
#
# $$ L^{V} = \tfrac12\operatorname{masked\_mean}\Big(\max\big((V-R)^2,\ (\mathrm{clip}(V, V_{\text{old}}-\epsilon_V, V_{\text{old}}+\epsilon_V)-R)^2\big)\Big). $$

# %% slideshow={"slide_type": "notes"}
def my_policy_loss(logp, old_logp, advantages, mask, clip_eps=0.2):
    keep = mask.bool()
    logp, old_logp, advantages = (torch.where(keep, x, torch.zeros(())) for x in (logp, old_logp, advantages))
    ratio = torch.exp(logp - old_logp)
    per_token = torch.maximum(-advantages * ratio, -advantages * ratio.clamp(1 - clip_eps, 1 + clip_eps))
    return torch.where(keep, per_token, torch.zeros(())).sum() / mask.sum()


def my_value_loss(values, old_values, returns, mask, clip_eps=0.2):
    keep = mask.bool()
    clipped = torch.minimum(torch.maximum(values, old_values - clip_eps), old_values + clip_eps)
    per_token = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * torch.where(keep, per_token, torch.zeros(())).sum() / mask.sum()


from teachkit.rlhf import ppo_policy_loss, ppo_value_loss  # noqa: E402

# the first minibatch: the policy has not moved yet, so ρ = 1 and the loss is −masked_mean(A). With
# whitened A that is 0 whatever the code does, so we check with the raw GAE advantages instead.
logp = completion_logprobs(policy, roll.prompts, roll.completions, mask)
ratio_dev = torch.where(mask.bool(), torch.exp(logp - old_logp) - 1, torch.zeros(())).abs().max().item()
mine, lib = my_policy_loss(logp, old_logp, adv, mask), ppo_policy_loss(logp, old_logp, adv, mask)
at_one = -masked_mean(adv, mask)
assert torch.allclose(mine, at_one) and torch.allclose(lib, at_one)
# a moved policy: every log-prob up by 0.3 (ρ = e^0.3 ≈ 1.35) or down by 0.3 (ρ ≈ 0.74). By hand, the
# pessimistic side is −A·min(ρ, 1 + ε) where A > 0 and −A·max(ρ, 1 − ε) where A < 0.
moved_losses = {}
for shift in (0.3, -0.3):
    moved = logp.detach() + shift
    rho = torch.tensor(shift).exp()
    per_token = torch.where(adv_w > 0, -adv_w * torch.clamp(rho, max=1.2), -adv_w * torch.clamp(rho, min=0.8))
    by_hand = masked_mean(per_token, mask)
    moved_losses[shift] = (my_policy_loss(moved, old_logp, adv_w, mask),
                           ppo_policy_loss(moved, old_logp, adv_w, mask), by_hand)
    assert all(torch.allclose(x, by_hand) for x in moved_losses[shift][:2]), f"clipped loss at shift {shift}"
noisy_values = values + 0.5 * torch.randn(values.shape, generator=torch.Generator().manual_seed(2))
assert torch.allclose(my_value_loss(noisy_values, values, ret, mask), ppo_value_loss(noisy_values, values, ret, mask))

# %%
# NBVAL_CHECK_OUTPUT
print(f"first minibatch: |ρ − 1| < 1e-6: {ratio_dev < 1e-6}; notebook {mine.item():.4f}, "
      f"library {lib.item():.4f}, −masked_mean(A) {at_one.item():.4f}")
for shift, (m, l, h) in moved_losses.items():
    print(f"log-probs {shift:+.1f}:  notebook {m.item():.4f}, library {l.item():.4f}, by hand {h.item():.4f}")
print(f"value loss:      notebook {my_value_loss(noisy_values, values, ret, mask).item():.4f}, "
      f"library {ppo_value_loss(noisy_values, values, ret, mask).item():.4f}")

# %% [markdown]
# **Try it.** One token's clipped objective against ρ, for a positive and a negative advantage:
# where is the gradient zero, and how does ε move the kink? (A static figure when no front end is
# attached.)

# %%
# NBVAL_IGNORE_OUTPUT
from teachkit import widgets

widgets.clipped_objective_widget()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. One PPO iteration, written out
#
# Sections 2 to 4 built each piece on a batch of its own. Here they run in order, as one iteration
# in one cell, the way `train_ppo` runs each of its iterations. This is Algorithm 1 of the PPO paper
# (arXiv:1707.06347v2, §5): run π_old to collect a batch and compute the advantages, then
# optimise the clipped surrogate for K epochs of minibatches, then set π_old ← π_θ. In RLHF the
# "environment" is the prompt set and the reward model, and one episode is one answer.
#
# 1. **Sample** one answer per prompt from the policy. It is π_old for this whole iteration.
# 2. **Score** each answer with the reward model and build the per-token reward of section 2:
#    −β·KL_t at every token (the k1 estimate), the score added at the last real token.
# 3. **Values and advantages**: the critic's values V_old at sampling time, GAE (section 3), and the
#    advantages whitened over the batch.
# 4. **K epochs** (`ppo_epochs`): each shuffles the batch into minibatches; each minibatch takes one
#    Adam step on $L^{\pi} + c_V L^{V}$ (section 4, $c_V$ = `vf_coef`), after clipping the
#    gradient norm of each network.
#
# Everything is computed from the same start as `train_ppo`: a fresh copy of the SFT policy, a
# critic copied from the reward model, and one Adam optimiser over both networks. Every random number
# comes from one generator seeded with `cfg.seed`, drawn in the order `train_ppo` draws them: the
# prompts, then the tokens of the answers, then one shuffle per epoch. (`train_ppo` evaluates the
# policy before it starts, but the evaluation uses a generator of its own, so it does not move
# these draws.) So a one-iteration run of `train_ppo` must end with exactly these parameters.

# %%
from dataclasses import replace  # noqa: E402

from teachkit.rlhf.ppo_train import PPOConfig, train_ppo  # noqa: E402

cfg = PPOConfig(steps=40, beta=0.5, lr=3e-4, eval_every=10, seed=0)   # the run of section 6
g = torch.Generator().manual_seed(cfg.seed)         # every random draw of the iteration comes from g
pi = world.new_policy()                             # π_θ: a fresh copy of the SFT policy
v_net = copy.deepcopy(reward_model).train()         # V_φ: the reward model, now trainable
for p in v_net.parameters():
    p.requires_grad_(True)
optimizer = torch.optim.Adam([{"params": pi.parameters(), "lr": cfg.lr},
                              {"params": v_net.parameters(), "lr": cfg.critic_lr}], eps=1e-5)
start = [p.detach().clone() for p in pi.parameters()]

with torch.no_grad():
    # 1. sample: π_old is π_θ as it is now, before this iteration's updates
    batch = generate(pi, task.sample_prompts(cfg.batch_size, g), task.max_new_tokens,
                     temperature=cfg.temperature, generator=g)
    m, P, T = batch.mask, batch.prompts.shape[1], batch.completions.shape[1]
    # 2. score, and the per-token reward of section 2
    batch_scores = world.proxy_reward(batch.prompts, batch.completions, m)
    pi_old_logp = completion_logprobs(pi, batch.prompts, batch.completions, m)
    pi_ref_logp = completion_logprobs(reference, batch.prompts, batch.completions, m)
    batch_rewards = per_token_rewards(batch_scores, pi_old_logp, pi_ref_logp, m, cfg.beta)
    # 3. the critic's values at sampling time, GAE, whitened advantages
    v_old = v_net.values(torch.cat([batch.prompts, batch.completions], 1))[:, P - 1:P + T - 1]
    batch_adv, batch_ret = gae(batch_rewards, v_old, m, cfg.gamma, cfg.gae_lambda)
    batch_adv = whiten(batch_adv, m)

# 4. K epochs over shuffled minibatches: the clipped policy loss plus vf_coef × the clipped value loss
losses = {"policy_loss": [], "value_loss": []}
for _epoch in range(cfg.ppo_epochs):
    for mb in torch.randperm(cfg.batch_size, generator=g).split(cfg.minibatch_size):
        pi_logp = completion_logprobs(pi, batch.prompts[mb], batch.completions[mb], m[mb])
        v = v_net.values(torch.cat([batch.prompts[mb], batch.completions[mb]], 1))[:, P - 1:P + T - 1]
        policy_loss = ppo_policy_loss(pi_logp, pi_old_logp[mb], batch_adv[mb], m[mb], cfg.clip_eps)
        value_loss = ppo_value_loss(v, v_old[mb], batch_ret[mb], m[mb], cfg.value_clip_eps)
        optimizer.zero_grad(set_to_none=True)
        (policy_loss + cfg.vf_coef * value_loss).backward()
        torch.nn.utils.clip_grad_norm_(pi.parameters(), cfg.max_grad_norm)
        torch.nn.utils.clip_grad_norm_(v_net.parameters(), cfg.max_grad_norm)
        optimizer.step()
        losses["policy_loss"].append(policy_loss.item())
        losses["value_loss"].append(value_loss.item())
# π_old ← π_θ: the next iteration would sample from the policy as it is now

# %% [markdown]
# Two details differ from `train_ppo`'s code without changing a bit of the result. `train_ppo` takes
# its log-probs from `teachkit.rlhf.onpolicy.logprobs_and_entropy`, which also returns the entropy
# and leaves the padding after each answer's end as it is; `completion_logprobs` sets the padding to
# 0. And `train_ppo` does not zero its per-token reward on the padding either. GAE, `whiten` and
# both losses select the real tokens before any arithmetic, so what sits in the padding reaches
# neither a value nor a gradient.
#
# Now run `train_ppo` for one iteration with the same configuration and compare. The comparison is
# `torch.equal`, not a tolerance: both sides run in this process on the same kernels, and the same
# operations on the same numbers in the same order give the same bits. The policy alone would not
# check the critic (the policy's gradient depends on the critic only through the advantages,
# computed before any update), so we also compare the mean losses `train_ppo` logged for the
# iteration: the value loss of minibatch k comes from the critic after k − 1 updates.

# %%
one_step, one_history = train_ppo(world, replace(cfg, steps=1))
identical = all(torch.equal(a, b) for a, b in zip(pi.parameters(), one_step.parameters()))
moved = max((p.detach() - p0).abs().max().item() for p, p0 in zip(pi.parameters(), start))
mean_losses = {k: sum(x) / len(x) for k, x in losses.items()}    # History averages the same floats
print(f"largest change of a policy parameter in the iteration: {moved:.2e}")
for k, x in losses.items():
    print(f"{k}: mean over the {len(x)} minibatches {mean_losses[k]:.6f}, train_ppo logged {one_history[k][1]:.6f}")
assert moved > 0, "the iteration must move the policy, or the comparison below proves nothing"
assert identical, "one iteration written out must give train_ppo's parameters, bit for bit"
assert all(mean_losses[k] == one_history[k][1] for k in losses), "and the same losses, bit for bit"

# %%
# NBVAL_CHECK_OUTPUT
print("the iteration above = train_ppo's first iteration, every policy parameter bit for bit:", identical)
print("the same mean policy and value losses, bit for bit:",
      all(mean_losses[k] == one_history[k][1] for k in losses))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Training
#
# `train_ppo` runs the iteration of section 5 40 times. Every 10 iterations it evaluates the policy
# on the 200 held-out prompts: gold reward, proxy reward and the KL to the reference. The whole
# loop reads top to bottom in `teachkit/rlhf/ppo_train.py`.

# %%
trained, history = train_ppo(world, cfg)
viz.compare_training_curves({"PPO β=0.5": history},
                            keys=("gold_reward", "proxy_reward", "kl_to_ref", "entropy", "clip_fraction", "value_loss"),
                            baselines={"gold_reward": history["gold_reward"][0]})

# %%
# NBVAL_CHECK_OUTPUT
# history logs, every 10 iterations, the average of the per-iteration maxima of |ρ − 1|
first_dev = max(history["first_ratio_dev"][1:])
print(f"first minibatch of every batch: |ρ − 1| < 1e-6: {first_dev < 1e-6}")
assert first_dev < 1e-6, "in the first minibatch π_θ = π_old: the ratio must be 1"

# %% [markdown]
# The critic starts from the reward model, which scores *finished* answers, so its values inside
# an answer are poor at first: the value loss starts high and falls as the critic learns. The
# entropy falls as the policy concentrates on the answers the reward model likes; the clip fraction
# stays at a few percent of tokens: the clip is active but not dominant. The cell below prints all
# three, from the first logged window to the last, and asserts them.
#
# Does the policy beat SFT on what we actually care about? We evaluate both on the held-out
# prompts, sampled (three fresh seeds, 200 prompts each) and greedy, and require PPO to beat SFT
# by at least **0.15 gold reward** (15 more right answers in 100) on the sampled average.

# %%
MARGIN = 0.15
seeds = (10, 11, 12)
sft_eval = [evaluate_policy(world, world.reference, seed=s) for s in seeds]
ppo_eval = [evaluate_policy(world, trained, seed=s) for s in seeds]
sft_gold = sum(e["gold_reward"] for e in sft_eval) / len(seeds)
ppo_gold = sum(e["gold_reward"] for e in ppo_eval) / len(seeds)
ppo_kl = sum(e["kl_to_ref"] for e in ppo_eval) / len(seeds)
sft_greedy = evaluate_policy(world, world.reference, greedy=True)["gold_reward"]
ppo_greedy = evaluate_policy(world, trained, greedy=True)
print(f"gold reward, sampled: SFT {sft_gold:.3f} -> PPO {ppo_gold:.3f}  (KL to the reference {ppo_kl:.2f} nats)")
print(f"gold reward, greedy:  SFT {sft_greedy:.3f} -> PPO {ppo_greedy['gold_reward']:.3f}  "
      f"(KL along the greedy path, a diagnostic: {ppo_greedy['kl_to_ref']:.2f} nats)")
for key in ("value_loss", "entropy", "clip_fraction"):       # entry 0 is logged before any update
    print(f"{key + ',':14s} averaged over each logged window:",
          " ".join(f"{x:.1%}" if key == "clip_fraction" else f"{x:.3f}" for x in history[key][1:]))
assert history["value_loss"][-1] < history["value_loss"][1] and history["entropy"][-1] < history["entropy"][1]
assert all(0 < x < 0.2 for x in history["clip_fraction"][1:]), "the clip acts on some tokens, not on most"
assert ppo_gold >= sft_gold + MARGIN, f"PPO should beat SFT by {MARGIN} gold reward on held-out prompts"

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Without the leash: β = 0
#
# The reward model is a proxy. It agrees with the gold reward on most pairs but not all (its
# held-out pair accuracy is printed in notebook 01). With β = 0 nothing stops the policy from
# drifting towards whatever the proxy overrates. In its textbook form, reward hacking shows as the
# proxy rising while the gold reward falls; underneath, it is the policy finding answers the proxy
# scores higher than they deserve.
#
# How strong must the push be? To find the proxy's blind spots the policy must move far, and how far
# it moves in 40 iterations grows with the step size. So we use a learning rate of 1.5e-3, five
# times that of section 6, for both arms, β = 0.5 and β = 0. Even then one run is one draw: the same
# recipe on another seed, or on a CPU whose floats round differently, takes another path. So we
# train each arm on three seeds, print every run, and assert only what holds across them: on every
# seed where the effect is large, on the mean of the seeds where it is not.

# %%
BOLD_LR, BOLD_SEEDS = 1.5e-3, (0, 1, 2)
bold = {(beta, seed): train_ppo(world, PPOConfig(steps=40, beta=beta, lr=BOLD_LR, eval_every=10, seed=seed))
        for beta in (0.5, 0.0) for seed in BOLD_SEEDS}
viz.compare_training_curves({f"β={b}, seed {s}": h for (b, s), (_, h) in bold.items()},
                            keys=("gold_reward", "proxy_reward", "kl_to_ref"),
                            baselines={"gold_reward": history["gold_reward"][0]},
                            styles={f"β={b}, seed {s}": {"color": viz.COLORS[0 if b else 1], "ls": ("-", "--", ":")[i]}
                                    for b in (0.5, 0.0) for i, s in enumerate(BOLD_SEEDS)})

# %% [markdown]
# Where did the β = 0 policies' proxy reward come from? We decode every prompt greedily and look for
# answers that are **wrong** yet scored **higher** by the reward model than the right answer would
# be: places where the proxy is wrong and the policy found it. The SFT policy is the baseline: it
# makes mistakes too, but does it pick the ones the reward model overrates? The gold and proxy
# rewards below are the sampled ones of section 6 (three evaluation seeds, 600 answers per policy).

# %% slideshow={"slide_type": "notes"}
all_prompts = task.all_prompts()
right, right_mask = task.completions_for(task.answers(all_prompts))
proxy_right = world.proxy_reward(all_prompts, right, right_mask)


def exploits(policy):
    """Greedy answers to every prompt; which are wrong, and which of those the reward model prefers."""
    greedy = generate(policy, all_prompts, task.max_new_tokens, greedy=True)
    is_wrong = world.gold_reward(greedy.prompts, greedy.completions, greedy.mask) < 0.5
    proxy_greedy = world.proxy_reward(greedy.prompts, greedy.completions, greedy.mask)
    return greedy, is_wrong, proxy_greedy, is_wrong & (proxy_greedy > proxy_right)


def summary(policy):
    evals = [evaluate_policy(world, policy, seed=s) for s in seeds]
    greedy, is_wrong, _, exploited = exploits(policy)
    return {"gold": sum(e["gold_reward"] for e in evals) / len(evals),
            "proxy": sum(e["proxy_reward"] for e in evals) / len(evals),
            "kl": sum(e["kl_to_ref"] for e in evals) / len(evals),
            "wrong": int(is_wrong.sum()), "exploited": int(exploited.sum()),
            "empty": int((greedy.mask.sum(1) == 1).sum())}  # just EOS


rows = {"SFT": summary(world.reference)} | {f"β={b}, seed {s}": summary(pol) for (b, s), (pol, _) in bold.items()}
print(f"{'':14s}  gold   proxy   KL    greedy answers: wrong / the reward model prefers the wrong one / empty")
for name, r in rows.items():
    print(f"{name:14s}{r['gold']:6.3f}{r['proxy']:7.2f}{r['kl']:6.2f}{r['wrong']:12d} /{r['exploited']:3d} /{r['empty']:3d}")


def arm(beta, key):
    return [rows[f"β={beta}, seed {s}"][key] for s in BOLD_SEEDS]


def mean(xs):
    return sum(xs) / len(xs)


sft = rows["SFT"]
print(f"mean of {len(BOLD_SEEDS)} seeds: β=0.5 gold {mean(arm(0.5, 'gold')):.3f}, proxy {mean(arm(0.5, 'proxy')):.2f}; "
      f"β=0 gold {mean(arm(0.0, 'gold')):.3f}, proxy {mean(arm(0.0, 'proxy')):.2f}; SFT gold {sft['gold']:.3f}, "
      f"proxy {sft['proxy']:.2f}; section 6's β=0.5 run at lr {cfg.lr:g}: gold {ppo_gold:.3f}")
# Margins, from seeds 0-2 under three float rounding paths (default, ATEN_CPU_CAPABILITY=default and
# =avx2): β = 0 exploited 9-24 answers per seed against SFT's 1; its mean KL was 3.1-3.5 nats above
# β = 0.5's, its mean gold 0.17-0.31 below SFT's and 0.31-0.36 below β = 0.5's, its mean proxy
# 0.45-0.51 below β = 0.5's. Whether its proxy rises above SFT's depends on the seeds (one β = 0 run
# on seed 3 collapsed to a proxy below SFT's), so that is printed, not asserted.
assert all(x > sft["exploited"] for x in arm(0.0, "exploited")) and \
    mean(arm(0.0, "exploited")) > sft["exploited"] + 5, "β = 0 finds the reward model's blind spots, every seed"
assert mean(arm(0.0, "kl")) > mean(arm(0.5, "kl")) + 1.0, "β = 0 drifts much further from the reference"
assert mean(arm(0.0, "gold")) < sft["gold"], "β = 0: gold ends below SFT"
assert mean(arm(0.0, "proxy")) < mean(arm(0.5, "proxy")), "β = 0 does not even please the proxy more"
assert mean(arm(0.5, "gold")) > mean(arm(0.0, "gold")) + 0.15, "the KL penalty keeps the gain real"
assert mean(arm(0.5, "gold")) < ppo_gold, "the bold learning rate costs the leashed runs too"
worst = min(BOLD_SEEDS, key=lambda s: rows[f"β=0.0, seed {s}"]["gold"])
greedy, _, proxy_greedy, exploited = exploits(bold[(0.0, worst)][0])
idx = exploited.nonzero().flatten()[:6]
print(f"some exploited answers of the β = 0 run with the least gold (seed {worst}), with their proxy rewards:")
task.show(greedy.prompts[idx], greedy.completions[idx], greedy.mask[idx], rewards=proxy_greedy[idx])

# %% [markdown]
# Read the table by rows of three seeds; the asserts above say what held on every rounding path
# the course tests. Without the leash the policies drifted much further from the reference (the KL
# column), found more of the reward model's blind spots than SFT on every seed (the second count:
# wrong greedy answers it scores above the right one), and lost gold reward: on average they end
# below SFT. The textbook picture, proxy up and gold down, is only half of it here: on average the
# β = 0 runs did not even reach the proxy reward of the leashed runs. A policy that wanders far in
# 40 large steps does find answers the proxy overrates (the last lines show a few; the table's last
# column counts the empty answers, just `<eos>`), but it wanders away from well-scored answers too.
# The leash keeps the gain real, though the large step size costs the leashed runs as well: their
# mean gold is below that of section 6's run.
#
# ## What we learned
#
# - RLHF with PPO is four models: the policy, a critic, the frozen reference and the frozen
#   reward model. The reward is the score at the last token minus β·k1 at every token.
# - GAE turns those rewards and the critic's values into per-token advantages; whitening fixes
#   their scale; the clipped surrogate keeps each ratio ρ near 1 (relative), the value clip keeps V
#   near V_old (absolute).
# - One iteration, written out, equals `train_ppo`'s bit for bit, and 40 of them beat SFT on the
#   gold reward by the margin asserted in section 6.
# - Without the KL leash, the policy drifts, exploits the reward model's blind spots and ends below
#   SFT on the gold reward.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# GAE and the clipped surrogate are written out in sections 3 and 4; `check.gae` and
# `check.ppo_clip_loss` still check versions of your own if you want to try them without looking.
# The graded exercises change one thing in each, so that copying the cell above is not enough.
# If a check fails, its hint is the idea; `check.hint(name, 2)` and `check.hint(name, 3)` give the
# formula and the code's shape, and `check.solution(name)` prints the reference.
#
# **Exercise 2.1: GAE on the reward PPO really sees.** Section 2 built the per-token reward and
# section 3 ran GAE on a reward it was given. Put the two together, as `train_ppo` does
# (InstructGPT, Ouyang et al. 2022, arXiv:2203.02155v1, §3.5: "a per-token KL penalty from the SFT
# model at each token", the per-token form of Eq. 2): every real token pays
# −β·(logp − ref_logp), the k1 estimate of its KL to the reference, and the reward model's score
# arrives once, on the **last real token** of each completion, which is not the last column when
# the completion is shorter than the batch; then GAE runs on that reward, with nothing bootstrapped
# beyond each completion's end.
# Write `my_gae_with_kl(scores, logp, ref_logp, values, mask, beta, gamma, lam) -> (advantages,
# returns)`: `scores` is (B,), the rest (B, T). Padding may hold NaN. Before you run the checker,
# work out by hand the advantages for logp − ref_logp = [0.5, −0.2], β = 0.1, score 0, V = 0 and
# γ = λ = 1.

# %%
def my_gae_with_kl(scores, logp, ref_logp, values, mask, beta, gamma, lam):
    raise NotImplementedError  # YOUR CODE HERE


_ = check.gae_with_kl(my_gae_with_kl)

# %% [markdown]
# **Exercise 2.2: DAPO's clip-higher.** PPO's clip is symmetric: the ratio ρ may leave
# [1 − ε, 1 + ε] on neither side. For a token the policy rarely writes (π_old = 0.01), 1 + ε = 1.2
# lets it reach only 0.012 per update however good it was, while a likely token (π_old = 0.9) is
# not held back at all (1.2 × 0.9 > 1). The upper clip limits exploration of rare tokens, and the
# policy's entropy collapses. DAPO (Yu et al. 2025, arXiv:2503.14476v2, §3.1, "Clip-Higher")
# decouples the two sides, with ε_low = 0.2 and ε_high = 0.28:
#
# $$\ell_t = \max\big(-A_t\rho_t,\ -A_t\,\mathrm{clip}(\rho_t,\ 1-\varepsilon_{low},\ 1+\varepsilon_{high})\big).$$
#
# Write `my_clip_higher_loss(logp, old_logp, advantages, mask, eps_low, eps_high)`, the masked
# mean of ℓ over real tokens. Before you run the checker, decide which tokens each ε acts on: a
# token with A > 0 and ρ = 1.25, and one with A < 0 and ρ = 0.75. Which still gets a gradient?

# %%
def my_clip_higher_loss(logp, old_logp, advantages, mask, eps_low, eps_high):
    raise NotImplementedError  # YOUR CODE HERE


_ = check.clip_higher_loss(my_clip_higher_loss)
