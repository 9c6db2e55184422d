# %% [markdown] slideshow={"slide_type": "slide"}
# # 01 · The toy world: a tiny GPT, a task with a gold reward, SFT and a reward model
#
# Every RLHF notebook of this course (02–09) starts from the same small world, so that methods
# are compared on equal terms. This notebook builds it:
#
# 1. a **task** with a tokenizer, a prompt sampler and a **gold reward written as code**;
# 2. a **tiny GPT** (pre-LN transformer, ReLU MLP, KV cache, optional value head);
# 3. **generation** and the per-token **log-probs** of a completion (with its famous shift by one);
# 4. **SFT** on a deliberately imperfect demonstrator → the *reference policy*;
# 5. **preference pairs** and a **Bradley–Terry reward model** → the *proxy reward*.
#
# The course's default task is **`arithmetic`**: prompt `a+b=`, answer the digits of a + b, then
# `<eos>`. A second task, **`length`**, is used where on-policy sampling should beat offline pairs.
#
# We train small things live; for the rest we load the stored versions from `data/` (made by
# `make data`, deterministic and checksummed).

# %%
import math

import torch
import torch.nn.functional as F

from teachkit import check, viz
from teachkit.toy import DEFAULT_TASK, evaluate_policy, generate, get_task, load_world
from teachkit.toy.generate import completion_logprobs, eos_mask, sequence_logprob
from teachkit.toy.sft import SFTConfig, new_model, train_sft

torch.set_num_threads(1)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The task: `a+b=` → digits, `<eos>`
#
# The tokenizer has one token per symbol: `<pad>` (id 0), `<eos>` (id 1), the ten digits, `+`
# and `=`. Every prompt has the same length (4), so prompts need no padding; completions are
# right-padded after `<eos>`.

# %%
# NBVAL_CHECK_OUTPUT
task = get_task(DEFAULT_TASK)
print(task)
print(task.tokenizer)
ids = task.tokenizer.encode("3+4=")
print(ids, "->", task.tokenizer.decode(ids))
assert task.tokenizer.decode(ids) == "3+4="

# %% [markdown]
# The **gold reward** is a few lines of code: 1 for the exact answer followed by `<eos>`, else 0.
# The off-by-one answer `8` differs from the right one by a single token: this is the
# low-edit-distance regime that will trouble DPO in notebook 05.

# %%
# NBVAL_CHECK_OUTPUT
answers = ["7<eos>", "8<eos>", "07<eos>", "7"]
completions, mask = task.encode_completions(answers)
prompts = torch.tensor([task.tokenizer.encode("3+4=")] * len(answers))
task.show(prompts, completions, mask)

# %% [markdown]
# The **demonstrator** is careless with carries. Without a carry (a + b ≤ 9) it is usually right;
# with a carry (a + b ≥ 10) it is right much less often, and most of its mistakes are one too many.
# Its error rates are parameters of the task, printed below beside what 4096 of its demonstrations
# measure. SFT will imitate it, so the SFT policy is decent but far from the optimum (gold reward 1).

# %%
# NBVAL_CHECK_OUTPUT
demos = task.demonstrations(4096, torch.Generator().manual_seed(0))
task.show(demos.prompts, demos.completions, demos.mask, n=6)
demo_gold = task.gold_reward(demos.prompts, demos.completions, demos.mask)
carry = task.answers(demos.prompts) >= 10
print(f"the task's demonstrator: P(right) = {task.p_correct_no_carry} without carry, {task.p_correct_carry} "
      f"with carry; P(one too many | carry) = {task.p_plus_one_carry}")
print(f"demonstrations right: {demo_gold.mean():.3f} overall, "
      f"{demo_gold[~carry].mean():.3f} without carry, {demo_gold[carry].mean():.3f} with carry")
plus_one, plus_one_mask = task.completions_for(task.answers(demos.prompts) + 1)
wrote_plus_one = ((demos.completions == plus_one) | ~plus_one_mask.bool()).all(1) & (demos.mask == plus_one_mask).all(1)
wrong_carry = carry & (demo_gold < 0.5)
share_up = wrote_plus_one[wrong_carry].float().mean().item()
print(f"wrong answers with a carry that are one too many: {share_up:.0%}")
assert demo_gold[carry].mean() < demo_gold[~carry].mean() - 0.3 and share_up > 0.5

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. The model, step by step
#
# A decoder-only transformer with **pre-LN** residual blocks:
#
# $$x_0 = E_{\text{tok}}[\text{idx}] + E_{\text{pos}}[0..T-1],\qquad
#   h = x + \text{Attn}(\text{LN}_1(x)),\qquad x^\prime = h + W_2\,\text{ReLU}(W_1\,\text{LN}_2(h)),$$
#
# and logits $= \text{LN}_f(x_L)\,E_{\text{tok}}^\top$ (tied weights). **Causal** attention lets
# position $i$ look at positions $0..i$ only. ReLU is the default because the sparse-inference
# notebooks (10–14) reuse this architecture: a ReLU sets every negative pre-activation to exactly
# zero, so on each token a share of the FFN's neurons contributes nothing (printed below for this
# untrained model; notebook 10 trains one in which most of them are zero).
#
# We write the forward pass by hand, reading the weights of a `teachkit.toy.GPT`, and check that
# it gives the library's logits.

# %% slideshow={"slide_type": "notes"}
def causal_attention(x, attn):
    B, T, C = x.shape
    H = attn.n_head
    q, k, v = attn.qkv(x).split(C, dim=2)
    q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))  # (B, H, T, d_head)
    scores = q @ k.transpose(-2, -1) / math.sqrt(C // H)                    # (B, H, T, T)
    causal = torch.ones(T, T, dtype=torch.bool).tril()                      # i sees 0..i
    weights = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)
    return attn.proj((weights @ v).transpose(1, 2).reshape(B, T, C))


def mlp(x, m):
    return m.proj(torch.relu(m.fc(x)))


def gpt_forward(model, idx):
    T = idx.shape[1]
    x = model.tok_emb(idx) + model.pos_emb(torch.arange(T))
    for block in model.blocks:
        x = x + causal_attention(block.ln1(x), block.attn)   # pre-LN: normalise the branch input
        x = x + mlp(block.ln2(x), block.mlp)
    return model.ln_f(x) @ model.tok_emb.weight.T


base = new_model(task, seed=0)            # 2 layers, 4 heads, d_model 64, d_ff 256, ReLU
idx = task.sample_prompts(5, torch.Generator().manual_seed(1))
torch.testing.assert_close(gpt_forward(base, idx), base(idx))
print("hand-written forward == teachkit.toy.GPT")

# %%
# NBVAL_CHECK_OUTPUT
print(base.config)
print(f"{base.num_parameters():,} parameters")
acts = base.mlp_activations(task.all_prompts())
print("FFN activations per layer:", [tuple(a.shape) for a in acts])
print("fraction exactly zero after ReLU, per layer:", [round((a == 0).float().mean().item(), 2) for a in acts])

# %% [markdown]
# **The KV cache.** Sampling adds one token at a time. Without a cache each step recomputes keys
# and values of the whole prefix; with one, each layer appends the new position's key and value
# and the new query attends to all stored keys. Same logits, less work:

# %%
g = torch.Generator().manual_seed(0)
prompts = task.sample_prompts(256, g)
with_cache = generate(base, prompts, task.max_new_tokens, generator=torch.Generator().manual_seed(3))
without = generate(base, prompts, task.max_new_tokens, generator=torch.Generator().manual_seed(3),
                   use_cache=False)
print("same tokens with and without the cache:", torch.equal(with_cache.completions, without.completions))
assert torch.equal(with_cache.completions, without.completions)
task.show(with_cache.prompts, with_cache.completions, with_cache.mask, n=4)

# %% [markdown]
# The untrained model writes noise. Two conventions hold for every completion in the course:
#
# - **the mask** is 1 up to *and including* the first `<eos>`, 0 after it (the padding);
# - **the log-prob of completion token j** comes from the logits at position $P + j - 1$, because
#   position $i$ predicts token $i + 1$. `completion_logprobs` is the only place where this shift
#   is written; here we check it against `F.cross_entropy` on the shifted sequence.

# %%
# NBVAL_CHECK_OUTPUT
print("eos_mask of [5 <eos> 7 <eos>] and [6 6 6 6]:",
      eos_mask(torch.tensor([[5, 1, 7, 1], [6, 6, 6, 6]]), eos_id=1).int().tolist())
comp = with_cache.completions[:8]
x = torch.cat([prompts[:8], comp], dim=1)
ce = F.cross_entropy(base(x)[:, :-1].transpose(1, 2), x[:, 1:], reduction="none")  # (B, P+T-1)
P = prompts.shape[1]
torch.testing.assert_close(completion_logprobs(base, prompts[:8], comp), -ce[:, P - 1:])
print("completion_logprobs == -cross_entropy of the shifted sequence")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. SFT: imitate the demonstrator
#
# Minimise the token-mean negative log-likelihood of the completion tokens (prompt and padding
# excluded). 200 steps take a few seconds; the stored reference policy was trained for longer (its
# step count is printed with it below).

# %%
sft_policy = new_model(task, seed=0)
history = train_sft(sft_policy, demos, SFTConfig(steps=200))
viz.plot_sft_loss(history, title="SFT on the arithmetic demonstrations (200 steps, live)")
live = evaluate_policy(load_world(), sft_policy)["gold_reward"]
print(f"gold reward of the live SFT policy: {live:.2f}")
assert 0.3 < live < 0.8, "SFT should be decent but imperfect"

# %% [markdown]
# Now the stored world: the SFT **reference** (600 steps), the frozen **reward model** and the
# preference **pairs**. `load_world()` checks each file's version and checksum; a stale or
# damaged file tells you to run `make data`.

# %%
# NBVAL_CHECK_OUTPUT
world = load_world()
print(world)
sampled = world.sft_metrics["gold_reward"]
greedy = world.sft_metrics["greedy_gold_reward"]
print(f"SFT reference ({int(world.sft_metrics['steps'])} steps): gold reward {sampled:.3f} sampled, "
      f"{greedy:.3f} greedy (demonstrator {world.sft_metrics['demo_gold_reward']:.3f}, optimum 1.000)")
assert sampled < 0.75, "the reference must leave room for RLHF"

# %% [markdown]
# Where is the SFT policy right? For each of the 100 prompts we compute the probability of the
# exact answer, $\pi(\text{answer} \mid a+b=) = \exp \sum_t \log \pi(y_t \mid \cdot)$, and whether
# greedy decoding finds it. The dashed line separates the carry prompts (lower right).

# %%
all_prompts = task.all_prompts()
right, right_mask = task.completions_for(task.answers(all_prompts))
with torch.no_grad():
    p_right = sequence_logprob(world.reference, all_prompts, right, right_mask).exp()
greedy_out = generate(world.reference, all_prompts, task.max_new_tokens, greedy=True)
greedy_right = task.gold_reward(all_prompts, greedy_out.completions, greedy_out.mask)
viz.plot_arithmetic_grid(p_right, greedy_right,
                         titles=["π_SFT(right answer)", "greedy answer is right"])

# %%
# NBVAL_CHECK_OUTPUT
has_carry = task.answers(all_prompts) >= 10
print(f"mean π_SFT(right answer): {p_right[~has_carry].mean():.2f} without carry, "
      f"{p_right[has_carry].mean():.2f} with carry; smallest {p_right.min():.2f}")
assert p_right.min() > 0.05, "sampling must be able to find the right answer everywhere"

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Preference pairs and the Bradley–Terry reward model
#
# Pairs come from two sources: two **SFT samples** of the same prompt, labelled by the gold
# reward (ties dropped), and **low-edit pairs**, the right answer against an answer off by one.
# 20% of the pairs are held out.

# %%
# NBVAL_CHECK_OUTPUT
pairs = world.pairs
print(pairs)
print("low-edit pairs (train):", int(pairs.train.low_edit.sum()))
for kind, is_low in (("sampled", False), ("low-edit", True)):
    for i in (pairs.train.low_edit == is_low).nonzero()[:3, 0].tolist():     # the first three of each kind
        p = pairs.train[i:i + 1]
        print(f"{task.format(p.prompts[0], p.chosen[0], p.chosen_mask[0]):<18s} ≻  "
              f"{task.format(p.prompts[0], p.rejected[0], p.rejected_mask[0]).split('→ ')[1]:<8s} ({kind})")

# %% [markdown]
# Bradley–Terry models a preference as $P(y_w \succ y_l) = \sigma(r(x, y_w) - r(x, y_l))$. The
# reward model is the SFT transformer with a scalar head read at the last token of the completion;
# maximum likelihood on the pairs minimises
#
# $$\mathcal{L}(\phi) = -\mathbb{E}\,\log\sigma\big(r_\phi(x, y_w) - r_\phi(x, y_l)\big)$$
#
# (`teachkit.rlhf.bradley_terry_loss`). Only differences of $r$ matter. We train one for 100
# steps live, then use the stored one, trained for longer (its step count is printed with it).

# %%
from teachkit.toy.reward_model import (RewardModelConfig, pair_accuracy, pearson, reward_model_from,
                                       train_reward_model)

rm = reward_model_from(world.reference, seed=0)
rm_history = train_reward_model(rm, pairs.train, RewardModelConfig(steps=100, lr=3e-4, eval_every=20),
                                heldout=pairs.heldout)
viz.plot_reward_model_training(rm_history, title="reward model, 100 steps (live)")
print(f"live reward model: held-out accuracy {rm_history['heldout_accuracy'][-1]:.2f}")

# %%
# NBVAL_CHECK_OUTPUT
stored = world.reward_metrics
print(f"stored reward model ({int(stored['steps'])} steps): held-out accuracy {stored['heldout_accuracy']:.3f} "
      f"on {len(pairs.heldout)} pairs "
      f"(train {stored['train_accuracy']:.3f}), correlation with gold {stored['gold_correlation']:.3f}")
heldout_acc = pair_accuracy(world.reward_model, pairs.heldout)
assert abs(heldout_acc - stored["heldout_accuracy"]) < 1e-6 and heldout_acc > 0.85

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Where the proxy agrees with the gold reward, and where it does not
#
# How good a judge is the reward model on fresh SFT samples? Two numbers say it. The correlation
# with the gold reward is the stored one printed above (we draw the samples with the seed `make data`
# used, 1). Since the gold reward here is right (1) or wrong (0), a more telling number is how often
# the proxy ranks a right answer above a wrong one, over all (right, wrong) pairs of samples: the area
# under the ROC curve, 0.5 for a coin flip and 1 for a perfect judge.

# %%
rollout = generate(world.reference, world.eval_prompts, task.max_new_tokens,
                   generator=torch.Generator().manual_seed(1))
proxy = world.proxy_reward(rollout.prompts, rollout.completions, rollout.mask)
gold = world.gold_reward(rollout.prompts, rollout.completions, rollout.mask)
viz.plot_proxy_vs_gold(proxy, gold)
print(f"correlation between proxy and gold (seed 1, as stored): {pearson(proxy, gold):.3f}")
assert abs(pearson(proxy, gold) - stored["gold_correlation"]) < 1e-4

right, wrong = proxy[gold == 1], proxy[gold == 0]
above = ((right[:, None] > wrong[None, :]).float().mean()
         + 0.5 * (right[:, None] == wrong[None, :]).float().mean()).item()
print(f"{len(right)} right and {len(wrong)} wrong answers; the proxy ranks the right one higher in "
      f"{above:.0%} of their pairs, the wrong one in {1 - above:.0%}")
assert 0.7 < above < 0.97, "the proxy should be a good but imperfect judge"

# %% [markdown]
# So the proxy is a good judge with a blind spot: the histograms overlap, and a policy that
# optimises it will find the pairs it gets the wrong way round. One set of 200 samples is a noisy
# measurement, so we repeat it over ten sample sets (seeds 0–9) and check that the stored value sits
# inside their spread:

# %%
def proxy_gold_correlation(seed):
    r = generate(world.reference, world.eval_prompts, task.max_new_tokens,
                 generator=torch.Generator().manual_seed(seed))
    return pearson(world.proxy_reward(r.prompts, r.completions, r.mask),
                   world.gold_reward(r.prompts, r.completions, r.mask))


corr = torch.tensor([proxy_gold_correlation(seed) for seed in range(10)])
print(f"correlation over seeds 0-9: mean {corr.mean():.2f}, std {corr.std():.2f}, "
      f"range {corr.min():.2f} to {corr.max():.2f}")
assert 0.4 < corr.mean() < 0.9 and corr.min() < stored["gold_correlation"] < corr.max()

# %% [markdown]
# A policy that maximises the proxy will, on each prompt, move towards the answer the reward
# model likes best. So the question that matters is: **does the reward model rank the right answer
# above its neighbours?** Where it does not, optimising the proxy *lowers* the gold reward:
# over-optimisation, which notebook 09 shows.

# %%
scores = []
for offset in (-2, -1, 0, 1, 2):
    value = task.answers(all_prompts) + offset
    comp, comp_mask = task.completions_for(value.clamp(min=0))
    score = world.proxy_reward(all_prompts, comp, comp_mask)
    scores.append(torch.where(value >= 0, score, torch.tensor(float("-inf"))))  # no negative answers
scores = torch.stack(scores, dim=1)                  # (100, 5): answers c-2 .. c+2
rm_right = (scores.argmax(dim=1) == 2).float()
viz.plot_arithmetic_grid(rm_right, p_right, titles=["reward model prefers the right answer",
                                                    "π_SFT(right answer)"])

# %%
# NBVAL_CHECK_OUTPUT
print(f"the reward model's favourite among c-2..c+2 is right on {int(rm_right.sum())} of 100 prompts")
wrong_prompts = all_prompts[rm_right == 0][:4]
for pr in wrong_prompts:
    i = int((all_prompts == pr).all(1).nonzero())
    best = int(task.answers(pr[None])) + int(scores[i].argmax()) - 2
    print(f"{task.tokenizer.decode(pr)} gold answer {int(task.answers(pr[None]))}, "
          f"reward model prefers {best}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. The second task: `length`, where the optimum lies where SFT rarely goes
#
# Prompt `k:` asks for exactly k letters (k = 1..6); gold reward $1 - |n - k| / 6$. The
# demonstrator mostly ignores k: it writes exactly k letters with a small probability `p_exact`
# (printed below) and otherwise a geometric length with mean 1/`p_stop` (printed too), so for
# k = 5 or 6 the SFT policy rarely writes k letters. Offline pairs built from its samples rarely
# contain the optimum; an on-policy method can walk the length distribution towards it.

# %%
length_world = load_world("length")
lt = length_world.task
k_prompts = lt.all_prompts().repeat_interleave(64, dim=0)
r = generate(length_world.reference, k_prompts, lt.max_new_tokens, generator=torch.Generator().manual_seed(0))
lengths, targets = lt.lengths(r.completions, r.mask), lt.targets(k_prompts)
viz.plot_length_distribution(lengths, targets, lt.max_target, lt.max_new_tokens - 1,
                             title="SFT reference on the length task")

# %%
p_hit = [(lengths[targets == k] == k).float().mean().item() for k in range(1, 7)]
print(f"the demonstrator writes exactly k letters with probability p_exact = {lt.p_exact}, "
      f"otherwise a geometric length with mean 1/p_stop = {1 / lt.p_stop:g}")
print("P(n = k) under SFT:", " ".join(f"k={k}: {p:.2f}" for k, p in enumerate(p_hit, 1)))
print(f"SFT gold reward on the length task: {length_world.sft_metrics['gold_reward']:.3f}")
assert max(p_hit[4], p_hit[5]) < 0.25 < p_hit[0]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## What we learned
#
# - The toy world is small enough to train live on a laptop CPU: a 100k-parameter GPT, 100 prompts,
#   and a gold reward written as code, so every later notebook can report the *true* reward.
# - Two conventions hold everywhere: the completion mask includes the first `<eos>`, and the
#   log-prob of completion token j comes from the logits at position P + j − 1.
# - SFT on an imperfect demonstrator gives a reference policy that is decent but leaves room:
#   RLHF has something to gain, and every prompt still has a reachable right answer.
# - Preference pairs come in two kinds, sampled and low-edit (off by one); the Bradley–Terry reward
#   model trained on them ranks pairs well but is an imperfect proxy of the gold reward, and on
#   some prompts it prefers a wrong answer, which a policy optimising it will find.
# - The `length` task puts the optimum where SFT rarely goes: the setting where on-policy sampling
#   should beat offline pairs.
#
# ## Exercises
#
# **1. `eos_mask(completions, eos_id)`.** Return a (B, T) mask that is 1 up to *and including*
# the first `eos_id` of each row and 0 after it. A row without EOS is all ones.

# %%
def my_eos_mask(completions, eos_id):
    raise NotImplementedError  # YOUR CODE HERE


_ = check.eos_mask(my_eos_mask)

# %% [markdown]
# **2. `completion_logprobs(logits, completions, mask)`.** `logits` (B, P + T, V) are the model's
# logits on prompt ⊕ completion; return the (B, T) log-probs of the completion tokens. Mind the
# shift by one. Under mask 0 the token ids may be anything (even −100) and the logits may be NaN:
# return exactly 0 there, without letting a NaN through.

# %%
def my_completion_logprobs(logits, completions, mask):
    raise NotImplementedError  # YOUR CODE HERE


_ = check.completion_logprobs(my_completion_logprobs)

# %% [markdown]
# **3. `bradley_terry(chosen_rewards, rejected_rewards)`.** Return the mean of
# $-\log\sigma(r_c - r_r)$ as a 0-dim tensor. It must stay finite for margins of ±200.

# %%
def my_bradley_terry(chosen_rewards, rejected_rewards):
    raise NotImplementedError  # YOUR CODE HERE


_ = check.bradley_terry(my_bradley_terry)
