# %% [markdown] slideshow={"slide_type": "slide"}
# # 03 · ReMax: drop the critic
#
# PPO (notebook 02) trains two networks: the policy and a critic as large as the policy. ReMax
# (Li et al., ICML 2024) notices three things about RLHF that ordinary RL lacks: the "environment"
# is a simulator we can run as often as we like, its transitions are deterministic (the next state
# is the prompt plus the tokens so far), and the reward arrives once, for the whole answer. So it
# replaces PPO with the oldest policy-gradient estimator, REINFORCE, and replaces the critic with a
# baseline that costs one extra decode: **the reward of the greedy answer to the same prompt**.
#
# Source: ReMax is Li et al. 2024 (arXiv:2310.10505v4), whose Algorithm 1 is the loop of section 3;
# the abstract lists the three properties above.

# %%
import torch

from teachkit import check, viz
from teachkit.toy.evaluate import evaluate_policy
from teachkit.toy.generate import completion_logprobs, generate
from teachkit.toy.world import load_world

torch.set_num_threads(1)
world = load_world()
task = world.task

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. REINFORCE with a baseline
#
# Write $\log\pi(y|x) = \sum_t \log\pi(y_t | x, y_{<t})$. The score-function identity
# $\nabla_\theta \mathbb E_{y\sim\pi}[r] = \mathbb E[r\,\nabla\log\pi(y|x)]$ gives an unbiased
# gradient from samples alone. Subtracting any $b(x)$ that does not look at the sample leaves it
# unbiased, because $\mathbb E_{y\sim\pi}[b(x)\nabla\log\pi(y|x)] = b(x)\,\nabla\sum_y \pi(y|x) = b(x)\,\nabla 1 = 0$:
#
# $$ \nabla J \approx \frac1B\sum_i \big(r(x_i, y_i) - b(x_i)\big)\sum_t \nabla\log\pi(y_{i,t} | x_i, y_{i,<t}). $$
#
# The baseline does change the **variance**: a good $b(x)$ is close to $\mathbb E[r|x]$. PPO learns
# it (the critic), GRPO estimates it from a group of samples, and ReMax uses
# $b(x) = r(x, \hat y)$ with $\hat y$ the greedy decode: when the policy is confident, its greedy
# answer is its typical answer. The KL leash goes into the return. We make a simple choice and
# subtract the **whole answer's** KL from one scalar return shared by all its tokens:
#
# $$ A_i = r(x_i, y_i) - r(x_i, \hat y_i) - \beta \sum_t \big(\log\pi(y_{i,t}) - \log\pi_{\text{ref}}(y_{i,t})\big). $$
#
# This is a deviation, stated as such in `remax_train.py`. PPO with γ = 1 (notebook 02) gives each
# token the KL *still to come* from that token on; the ReMax code gives each token its *own* KL term
# and also clips r − r̂ to ±5. Our whole-sequence version is still an unbiased REINFORCE estimate of
# ∇(E[r] − β·KL): it only drops the "reward to go" trick, which lowers variance without changing
# the expectation.
#
# As a loss to minimise (token-mean, as in the ReMax code):
# $L = -\sum_{i,t} A_i \log\pi(y_{i,t})\, m_{i,t} / \sum m$. Its value means nothing; its gradient
# is the estimate above (up to the normalisation).

# %%
def my_reinforce_loss(logp, advantages, mask):
    keep = mask.bool()
    logp = torch.where(keep, logp, torch.zeros(()))
    per_token = -advantages[:, None] * logp
    return torch.where(keep, per_token, torch.zeros(())).sum() / mask.sum()


from teachkit.rlhf import reinforce_loss, remax_advantages  # noqa: E402

policy = world.new_policy()
g = torch.Generator().manual_seed(0)
prompts = task.sample_prompts(64, g)
sample = generate(policy, prompts, task.max_new_tokens, generator=g)
greedy = generate(policy, prompts, task.max_new_tokens, greedy=True)
r_sample = world.proxy_reward(sample.prompts, sample.completions, sample.mask)
r_greedy = world.proxy_reward(greedy.prompts, greedy.completions, greedy.mask)
advantages = remax_advantages(r_sample, r_greedy)          # the KL term is 0 here: policy = reference
logp = completion_logprobs(policy, sample.prompts, sample.completions, sample.mask)
mine, lib = my_reinforce_loss(logp, advantages, sample.mask), reinforce_loss(logp, advantages, sample.mask)
assert torch.allclose(mine, lib)

# %%
# NBVAL_CHECK_OUTPUT
print(f"notebook loss {mine.item():.4f}, library loss {lib.item():.4f}")
print("sample vs greedy for the first 4 prompts:")
for i in range(4):
    print(f"  {task.format(prompts[i], sample.completions[i], sample.mask[i]):<18s} r={r_sample[i].item():+.2f}   "
          f"greedy {task.format(prompts[i], greedy.completions[i], greedy.mask[i]):<18s} r={r_greedy[i].item():+.2f}   "
          f"A={round(advantages[i].item(), 2) + 0.0:+.2f}")  # + 0.0: no "-0.00"
print(f"proxy reward of the 64 samples: mean {r_sample.mean().item():+.2f}, "
      f"range {r_sample.min().item():+.2f} .. {r_sample.max().item():+.2f}")

# %% [markdown]
# When the sample *is* the greedy answer, its advantage is exactly 0: nothing to learn from that
# prompt. When the sample is worse than the greedy answer, its probability is pushed down; when it
# is better, up.
#
# ## 2. How much does the baseline reduce the variance?
#
# We estimate the gradient 24 times on the same 16 prompts (4 samples each, 64 per estimate) and
# measure the total variance $\mathbb E\|g - \bar g\|^2$ of the estimates, for three baselines:
# none, the greedy decode (ReMax), and the mean of the *other* samples of the same prompt
# (leave-one-out, so still unbiased; GRPO and RLOO use group baselines). All three see the same
# samples. A reward model only defines rewards up to a constant (notebook 01), so we also shift
# every reward by +3: the baselines subtract the shift again, "none" does not. A variance from 24
# estimates is itself noisy (for Gaussian noise its relative standard error is √(2/23) ≈ 30%) and
# depends on the 16 prompts, so we repeat the whole measurement on three prompt sets (seeds 0, 1,
# 2) and look at every set as well as the mean.

# %%
from teachkit.rlhf.remax_train import gradient_variance  # noqa: E402

BASELINE_RUNS = [("none", "none", 0.0), ("none, r + 3", "none", 3.0),
                 ("greedy (ReMax)", "greedy", 0.0), ("group mean", "group", 0.0)]
PROMPT_SETS = (0, 1, 2)


def variances(policy, runs):
    """Total gradient variance per baseline (rows) and prompt set (columns)."""
    return {name: [gradient_variance(world, policy, baseline, reward_shift=shift, seed=s)["total_variance"]
                   for s in PROMPT_SETS] for name, baseline, shift in runs}


def mean(xs):
    return sum(xs) / len(xs)


variance = variances(world.new_policy(), BASELINE_RUNS)
viz.plot_variance_bars({k: mean(v) for k, v in variance.items()},
                       title="gradient variance at the SFT policy (mean of 3 prompt sets)")

# %%
for k, v in variance.items():
    print(f"{k:15s} total variance per prompt set {' '.join(f'{x:6.2f}' for x in v)}   mean {mean(v):6.2f}")
on_every_set = lambda a, b: all(x < y for x, y in zip(variance[a], variance[b]))  # noqa: E731
assert on_every_set("group mean", "none") and on_every_set("group mean", "greedy (ReMax)")
assert on_every_set("greedy (ReMax)", "none, r + 3") and on_every_set("none", "none, r + 3")
assert mean(variance["greedy (ReMax)"]) < mean(variance["none"])

# %% [markdown]
# Read the numbers with the shift in mind. Without a baseline the variance depends on an arbitrary
# constant: the reward model's scores are not centred (their mean and range at the SFT policy are
# printed in section 1), and shifting them by 3 more raises the variance on every prompt set. The
# greedy baseline removes that dependence. Against "none" at the unshifted scores it wins on
# average, but not necessarily on every prompt set (compare the rows): this reward model's offset
# happens not to be far from a good constant baseline. The group mean has the lowest variance on
# every set: it is closer to $\mathbb E[r|x]$ than the reward of the policy's *mode*, and the SFT
# policy is far from confident (its gold reward, printed in section 3, is far from 1). But it costs
# G samples per prompt; ReMax pays one decode.
#
# ## 3. Training ReMax
#
# `train_remax` (in `teachkit/rlhf/remax_train.py`) repeats: for 64 prompts, one sample and one
# greedy decode, rewards from the reward model, $A = r - r_{\text{greedy}} - \beta\,\mathrm{KL}$, and one
# Adam step on the REINFORCE loss. No critic, no ratio, no clip, no epochs.

# %%
from teachkit.rlhf.remax_train import ReMaxConfig, train_remax  # noqa: E402

trained, history = train_remax(world, ReMaxConfig(steps=60, beta=0.5, lr=3e-4, eval_every=10, seed=0))
viz.compare_training_curves({"ReMax β=0.5": history},
                            keys=("gold_reward", "proxy_reward", "kl_to_ref", "entropy", "advantage_std"),
                            baselines={"gold_reward": history["gold_reward"][0]})

# %% [markdown]
# The update follows the advantage r(sample) − r(greedy): put the two rewards side by side, as
# the loop logged them (the reward model's score per training batch, averaged over each window of
# 10 iterations).

# %%
batch_rewards = {"samples": {"step": history["step"], "reward": history["train_score"]},
                 "greedy decode (the baseline)": {"step": history["step"], "reward": history["greedy_score"]}}
viz.compare_training_curves(batch_rewards, keys=("reward",), title="reward model's score of the training batches")
sample_r, greedy_r = history["train_score"][1:], history["greedy_score"][1:]   # entry 0 is the untrained log
gap = [s - g for s, g in zip(sample_r, greedy_r)]
print("iterations up to       ", " ".join(f"{int(x):6d}" for x in history["step"][1:]))
print("samples' reward        ", " ".join(f"{x:6.2f}" for x in sample_r))
print("greedy decode's reward ", " ".join(f"{x:6.2f}" for x in greedy_r))
print("samples − greedy       ", " ".join(f"{x:+6.2f}" for x in gap))
rise = {"samples": sample_r[-1] - sample_r[0], "greedy": greedy_r[-1] - greedy_r[0]}
print(f"rise from the first to the last window: samples {rise['samples']:+.2f}, greedy {rise['greedy']:+.2f}")
assert all(x < 0 for x in gap), "the greedy decode scores above the samples throughout"
# over training seeds 0-4 the samples' rise exceeded the greedy decode's by 0.23-0.58
assert rise["samples"] > rise["greedy"], "the samples catch up with the greedy decode"
adv_std = history["advantage_std"][1:]
print("advantage std          ", " ".join(f"{x:6.2f}" for x in adv_std))
assert adv_std[-1] < adv_std[0], "the advantages' spread shrinks"

# %% [markdown]
# The greedy decode is the policy's single most likely answer, and the reward model scores it well
# above the average sample from the start. As training goes on, the samples' reward rises more than
# the greedy reward does: sampling concentrates on the answers the greedy decode already gives. So
# the mean advantage r(sample) − r(greedy) is negative in every window and shrinks towards 0. A
# sample equal to the greedy decode gets no push (apart from the KL term), a worse one is pushed
# *down*, and only one that beats the greedy decode is pushed up: the baseline is hard to beat. A
# negative mean advantage is no bias (the baseline does not depend on the sample), but it means
# ReMax's baseline is not centred on the samples the way a group mean is; section 2 measured what
# that costs in variance. The advantages' spread (the last panel of the curves above, and the last
# line printed) shrinks as the policy becomes confident.
#
# Does the trained policy beat SFT on the held-out prompts? We require at least **0.15 gold
# reward** more (sampled, mean of three evaluation seeds). One training run is one draw: the gain
# of a single run sits close to that bar and varies from seed to seed (the three runs below print
# theirs), and a CPU that rounds floats differently draws differently again. So we train two more
# seeds with the same settings and hold the *mean over the three training seeds* to the bar.

# %%
MARGIN = 0.15
seeds = (10, 11, 12)
sft_gold = sum(evaluate_policy(world, world.reference, seed=s)["gold_reward"] for s in seeds) / 3
remax_eval = [evaluate_policy(world, trained, seed=s) for s in seeds]
remax_gold = sum(e["gold_reward"] for e in remax_eval) / 3
remax_kl = sum(e["kl_to_ref"] for e in remax_eval) / 3
remax_greedy = evaluate_policy(world, trained, greedy=True)
print(f"gold reward, sampled: SFT {sft_gold:.3f} -> ReMax {remax_gold:.3f} (KL to the reference {remax_kl:.2f} nats)")
print(f"gold reward, greedy:  SFT {evaluate_policy(world, world.reference, greedy=True)['gold_reward']:.3f} "
      f"-> ReMax {remax_greedy['gold_reward']:.3f} (KL along the greedy path, a diagnostic: "
      f"{remax_greedy['kl_to_ref']:.2f} nats)")
runs = {0: remax_gold} | {
    seed: sum(evaluate_policy(world, train_remax(world, ReMaxConfig(steps=60, beta=0.5, lr=3e-4, eval_every=60,
                                                                    seed=seed))[0], seed=s)["gold_reward"]
              for s in seeds) / 3
    for seed in (1, 2)}
print("gold reward, sampled, per training seed:", "  ".join(f"seed {k}: {v:.3f}" for k, v in runs.items()),
      f"  mean {sum(runs.values()) / len(runs):.3f}")
assert sum(runs.values()) / len(runs) >= sft_gold + MARGIN, f"ReMax should beat SFT by {MARGIN} gold reward"

# %% [markdown]
# Is the greedy baseline still good once the policy is confident? We measure the variance again,
# at the trained policy, and look at what the reward model pays for right and wrong samples.

# %%
after = variances(trained, [run for run in BASELINE_RUNS if run[0] != "none, r + 3"])
for k, v in after.items():
    print(f"{k:15s} total variance per prompt set {' '.join(f'{x:6.2f}' for x in v)}   mean {mean(v):6.2f}"
          f"   (at SFT: mean {mean(variance[k]):6.2f})")
worse_than_none = {k: sum(x > y for x, y in zip(after[k], after["none"])) for k in ("greedy (ReMax)", "group mean")}
print("prompt sets on which the baseline has more variance than none:", worse_than_none)
assert mean(after["greedy (ReMax)"]) > mean(after["none"]) and mean(after["group mean"]) > mean(after["none"])
g = torch.Generator().manual_seed(3)
roll = generate(trained, task.sample_prompts(512, g), task.max_new_tokens, generator=g)
is_right = world.gold_reward(roll.prompts, roll.completions, roll.mask) > 0.5
proxy = world.proxy_reward(roll.prompts, roll.completions, roll.mask)
print(f"trained policy: {is_right.float().mean().item():.0%} of samples right; reward model pays "
      f"{proxy[is_right].mean().item():+.2f} for right ones, {proxy[~is_right].mean().item():+.2f} for wrong ones")

# %% [markdown]
# **The ranking flips, on average.** At the trained policy both "mean-like" baselines (greedy and
# group) have *more* variance than no baseline at all on average over the three prompt sets, though
# not necessarily on every set (the count above). Nothing is wrong with the estimators, which stay
# unbiased; what changed is where the gradient comes from. A confident policy's right answers have
# probability near 1, so their $\nabla\log\pi$ is tiny; almost all the gradient comes from the rare
# wrong samples, whose $\nabla\log\pi$ is large. The constant baseline that minimises the variance
# is not the mean reward but the gradient-weighted one,
# $b^* = \mathbb E[r\,\|\nabla\log\pi\|^2] / \mathbb E[\|\nabla\log\pi\|^2]$, which sits near the
# reward of the *wrong* answers. This reward model pays little for them (printed above), so "no
# baseline" (b = 0) is close to $b^*$, while the greedy and group baselines sit near the reward of
# the right answers and give every rare mistake a large advantage. Lessons: a baseline is judged by
# variance, not by how "reasonable" it looks, the best one changes as the policy sharpens, and a
# variance measured on one prompt set is too noisy to rank close candidates. ("None" would be bad
# again if the reward model's offset were different, as the shifted scores above showed.)
#
# ## 4. What it costs: ReMax against PPO on the same model
#
# We run a few iterations of each loop with `profile_step` set. The loops then report
# (see `teachkit/rlhf/costs.py` for exactly what is measured):
#
# - **models held** and **trainable parameters**;
# - **optimizer state**: the bytes of every tensor in Adam's state (two moments per parameter);
# - **resident state**: weights of every model + gradients and optimizer state of the trainable ones;
# - **step peak**: the highest extra memory torch allocates during one iteration (activations,
#   samples, logits), measured with `torch.profiler` (`profile_memory=True`);
# - **peak** = resident + step peak; and **seconds per step**, the median over unprofiled steps.

# %%
from teachkit.rlhf.ppo_train import PPOConfig, train_ppo  # noqa: E402

_, ppo_h = train_ppo(world, PPOConfig(steps=8, eval_every=100, profile_step=2, seed=0))
_, remax_h = train_remax(world, ReMaxConfig(steps=8, eval_every=100, profile_step=2, seed=0))
COST_KEYS = ("models_held", "trainable_params", "optimizer_mb", "resident_mb", "step_peak_mb", "peak_mb",
             "seconds_per_step")
costs = {"PPO": {k: ppo_h[k][0] for k in COST_KEYS}, "ReMax": {k: remax_h[k][0] for k in COST_KEYS}}
viz.plot_cost_bars(costs, keys=("resident_mb", "step_peak_mb", "peak_mb", "seconds_per_step"))

# %%
# NBVAL_CHECK_OUTPUT
for k in ("models_held", "trainable_params"):
    print(f"{k:17s} PPO {int(costs['PPO'][k]):10,d}   ReMax {int(costs['ReMax'][k]):10,d}")
for k in ("optimizer_mb", "resident_mb"):  # optimizer state also holds Adam's step counters: 2 decimals
    print(f"{k:17s} PPO {costs['PPO'][k]:10.2f}   ReMax {costs['ReMax'][k]:10.2f}")
saving = 1 - costs["ReMax"]["resident_mb"] / costs["PPO"]["resident_mb"]
print(f"resident state: ReMax holds {saving:.0%} less than PPO")

# %%
# NBVAL_IGNORE_OUTPUT
for k in ("step_peak_mb", "peak_mb", "seconds_per_step"):
    print(f"{k:17s} PPO {costs['PPO'][k]:10.3f}   ReMax {costs['ReMax'][k]:10.3f}")
print(f"peak memory: ReMax needs {1 - costs['ReMax']['peak_mb'] / costs['PPO']['peak_mb']:.0%} less than PPO")
print(f"step peak: ReMax / PPO = {costs['ReMax']['step_peak_mb'] / costs['PPO']['step_peak_mb']:.2f}")
assert costs["ReMax"]["peak_mb"] < costs["PPO"]["peak_mb"]

# %% [markdown]
# The saving is in the resident state: one trainable network instead of two, so half the gradients
# and half of Adam's state, and one model fewer to hold. The step peak, what one iteration allocates
# on top, does not shrink with it (the ratio is printed above): ReMax backpropagates through all 64
# answers of its batch in one step, while PPO does so through minibatches of 32
# (`PPOConfig.minibatch_size`). The time per step falls as well (printed above): one backward pass
# per iteration instead of PPO's four epochs over minibatches. At scale the weights and Adam's state
# dominate, which is why the ReMax paper reports a large memory saving for 7B models
# (arXiv:2310.10505v4, abstract); `teachkit/rlhf/costs.py` works out the bytes per parameter.
#
# ## What we learned
#
# - REINFORCE with a baseline that does not look at the sample is unbiased; the baseline only
#   changes the variance. ReMax's baseline is the reward of the greedy decode: one extra decode, no
#   critic.
# - At the SFT policy the group mean had less variance than the greedy baseline, and both less than
#   "none" once the rewards are shifted; at the trained policy the ranking flipped. A baseline is
#   judged by the variance it gives, and the best one moves as the policy sharpens.
# - ReMax beat SFT on the gold reward (mean of three training seeds) with one trainable network,
#   holding less resident memory than PPO.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# If a check fails, its hint is the idea; `check.hint(name, 2)` and `check.hint(name, 3)` give the
# formula and the code's shape, and `check.solution(name)` prints the reference.
#
# **Warm-up (not graded): the REINFORCE loss.** Section 1 wrote it out; `check.reinforce_loss`
# checks a version of your own if you want to write it again without looking: −Σ A·logp·mask /
# Σ mask with one advantage per sequence, broadcast over its tokens, and no NaN leaking from the
# padding.

# %%
def my_reinforce(logp, advantages, mask):
    raise NotImplementedError  # YOUR CODE HERE


_ = check.reinforce_loss(my_reinforce)

# %% [markdown]
# **Exercise 3.1: the baseline with the least variance.** ReMax subtracts the greedy decode's
# reward; any baseline that does not look at the sample keeps the gradient unbiased, because
# E[∇θ log π(y)] = 0 (Williams 1992, "Simple statistical gradient-following algorithms for
# connectionist reinforcement learning", Machine Learning 8:229–256). Which
# *constant* baseline b makes the estimate g_i = (r_i − b)·∇θ log π(y_i) vary least? Write
# s_i = ‖∇θ log π(y_i)‖² for sample i. The mean of g does not depend on b, so only its second
# moment does:
#
# $$\mathbb E\big[\lVert g\rVert^2\big] = \mathbb E\big[(r - b)^2\, s\big],\qquad
#   \frac{d}{db} = -2\,\mathbb E\big[(r - b)\, s\big] = 0 .$$
#
# Solve for b: that is the variance-minimising baseline b\* (Greensmith, Bartlett and Baxter 2004,
# "Variance reduction techniques for gradient estimates in reinforcement learning", JMLR 5,
# 1471–1530; Weaver and Tao 2001, "The optimal reward baseline for gradient-based reinforcement
# learning", UAI). Write `my_optimal_baseline(rewards, score_sq)`: both (N,), the rewards r_i and
# the squared score norms s_i of N samples of one prompt; return b\* as a 0-dim tensor, using the
# sample averages for the expectations. Before you run the checker: what is b\* when every s_i is
# the same? And why is the mean reward (RLOO's and GRPO's choice) not b\* in general?

# %%
def my_optimal_baseline(rewards, score_sq):
    raise NotImplementedError  # YOUR CODE HERE


_ = check.optimal_baseline(my_optimal_baseline)

# %% [markdown]
# What b\* buys, on a problem small enough to compute exactly: a softmax policy over four answers
# with fixed rewards, π = softmax(θ), where ∇θ log π(a) = onehot(a) − π. The cell draws 4096
# answers, estimates b\* from them (with the checker's reference, so it runs before you solve 3.1),
# and compares the exact variance of the gradient estimate under three baselines.

# %%
# NBVAL_CHECK_OUTPUT
theta = torch.tensor([2.0, 0.5, 0.0, -1.0], dtype=torch.float64)
reward = torch.tensor([1.0, 0.0, 3.0, 0.5], dtype=torch.float64)
pi = torch.softmax(theta, 0)
score = torch.eye(4, dtype=torch.float64) - pi                   # row a: ∇θ log π(a)
score_sq = (score ** 2).sum(1)

g = torch.Generator().manual_seed(0)
draws = torch.multinomial(pi, 4096, replacement=True, generator=g)
baselines = {"none (b = 0)": 0.0, "mean reward": float(reward[draws].mean()),
             "b* (weighted)": float(check.optimal_baseline.reference(reward[draws], score_sq[draws]))}


def exact_variance(b):
    """Total variance E‖(r − b)∇log π‖² − ‖E[(r − b)∇log π]‖², exactly, over the four answers."""
    per_answer = (reward - b)[:, None] * score
    mean = (pi[:, None] * per_answer).sum(0)
    return float((pi * (per_answer ** 2).sum(1)).sum() - (mean ** 2).sum())


variances = {name: exact_variance(b) for name, b in baselines.items()}
for name, b in baselines.items():
    print(f"{name:14s} b = {b:.3f}   variance of the gradient estimate {variances[name]:.4f}")
assert variances["b* (weighted)"] <= variances["mean reward"] <= variances["none (b = 0)"]

# %% [markdown]
# The mean reward removes most of the variance; b\* removes a little more here, and more when the
# score norms differ more between answers (try θ = [4, 0, 0, −2]). It is rarely used in LLM
# training: s_i needs a per-sample gradient norm over millions of parameters, which costs a
# backward pass per sample.
