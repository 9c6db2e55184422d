# %% [markdown] slideshow={"slide_type": "slide"}
# # 09 · The showdown: on-policy against off-policy, on equal terms
#
# A question every practitioner meets: *on-policy (PPO and friends: the model writes, a reward model
# grades) or off-policy (DPO and friends: learn from a fixed set of preference pairs), which wins?*
# The common rule of thumb: on-policy needs more compute but has the higher ceiling; off-policy is
# cheaper but only as good as the match between its data and the model. Xu et al. (2024), "Is DPO
# superior to PPO for LLM alignment? A comprehensive study", arXiv:2404.10719v1, and Tajwar et al.
# (2024), "Preference fine-tuning of LLMs should leverage suboptimal, on-policy data",
# arXiv:2404.14367v1, test it at scale.
#
# Here we measure it. Ten methods share one toy world: PPO, ReMax, GRPO, RLOO (on-policy) and DPO,
# DPOP, IPO, SimPO, TDPO, ORPO (off-policy), on two tasks, under **one budget**. Nine start from the
# same SFT policy; ORPO, which folds SFT into its loss, starts from the un-tuned base model. Every
# method gets the same search: a grid of its KL leash β, and for the off-policy methods a grid of
# learning rates too, each setting trained on a few *sweep* seeds. The setting with the best mean gold
# reward over those seeds is then trained again on *fresh* seeds, and only those fresh runs are
# ranked. The runs take tens of minutes on one core, so `make data` trains them once
# (`teachkit/rlhf/showdown_data.py`) and stores them in `data/`; this notebook loads them, re-runs one
# of them live to prove the stored numbers are real, and lets you explore with two widgets.
#
# Sources for the methods: PPO arXiv:1707.06347v2, ReMax arXiv:2310.10505v4, GRPO arXiv:2402.03300v1,
# RLOO arXiv:2402.14740v1, DPO arXiv:2305.18290v3, DPOP arXiv:2402.13228v2, IPO arXiv:2310.12036v2,
# SimPO arXiv:2405.14734v1, TDPO arXiv:2404.11999v5, ORPO arXiv:2403.07691v2.

# %%
import math

import torch

from teachkit import check, widgets
from teachkit.rlhf import runner, showdown_data
from teachkit.viz import showdown as vz

torch.set_num_threads(1)
records, meta = showdown_data.load("arithmetic")
length_records, length_meta = showdown_data.load("length")
for task, recs, m in (("arithmetic", records, meta), ("length", length_records, length_meta)):
    n_select = len(showdown_data.select_runs(recs, phase="select"))
    n_test = len(showdown_data.select_runs(recs, phase="test"))
    print(f"{task:10s}: {n_select} sweep runs (seeds {m['select_seeds']}), "
          f"{n_test} runs of the chosen settings (fresh seeds {m['test_seeds']})")
settings_tried = {m: len(meta["betas"][m]) * len(meta["lrs"][m]) for m in meta["betas"]}
print("settings tried per method on arithmetic (β × lr):", ", ".join(f"{m} {n}" for m, n in settings_tried.items()))
tried = {fam: [n for m, n in settings_tried.items() if runner.METHODS[m].family == fam]
         for fam in ("on-policy", "off-policy")}
assert min(tried["off-policy"]) >= 2 * max(tried["on-policy"])     # "several times more settings"

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. Equal terms: one budget of labels
#
# Both routes pay for feedback, in different coin. An on-policy method samples a completion and asks
# the reward model for a score: one **reward query**. An off-policy method trains on a comparison
# somebody already made: one **preference pair**. We give every method the same number of *labels*
# and count one pair as one query: one judgement of the labeller buys either one score or one
# comparison. (A pair shows the learner two completions for that judgement, so in *completions seen*
# the off-policy side already gets twice as many; counting a pair as two queries would halve its
# budget. We chose the rate that does not favour the route we expect to win, the on-policy one.)
#
# The two kinds of label do not come from the same judge, though. The preference pairs were ranked by
# the task's **gold** reward (`teachkit/toy/pairs.py`), while the on-policy loops are scored by the
# learned **proxy** reward model. So the off-policy side learns from the true judgement and the
# on-policy side from an imperfect model of it, which again tilts the comparison towards off-policy.
#
# One more caveat on what "equal" means here. The proxy reward model was itself trained on the same
# training pairs the off-policy methods read (notebook 01). So the budget equalises *optimiser
# samples* (labels spent inside each loop), not *information*: the on-policy side also benefits,
# through its reward model, from every pair, and the comparison says which route turns the same
# labelling effort into more gold reward on this toy, not which route saw less data.
#
# A pair drawn twice is paid twice, so epochs over a small dataset cost what they teach. The budget
# then fixes the number of optimiser steps of every loop:

# %%
# NBVAL_CHECK_OUTPUT
budget = runner.Budget(labels=meta["budget_labels"], pairs_per_query=meta["pairs_per_query"])
print(f"budget: {budget.labels} labels, {budget.pairs_per_query:g} pair per query\n")
print(f"{'method':7s} {'family':11s} {'labels/step':>11s} {'steps':>6s}")
for method, spec in runner.METHODS.items():
    cfg = runner.make_config(method, spec.default_beta, budget)      # β and lr do not change the steps
    per_step = spec.labels_per_step(cfg)
    print(f"{method:7s} {spec.family:11s} {per_step:11d} {budget.steps(spec.family, per_step):6d}")

# %% [markdown]
# The `labels/step` column is what one optimiser step spends. PPO scores one sampled completion per
# prompt of its batch; ReMax scores two per prompt (its sample and its greedy baseline), GRPO and RLOO
# one per completion of each prompt's group; an off-policy step pays one label per pair in its batch.
# A method that spends more per step takes fewer steps.
#
# Wall time is *not* equalised: it is measured, and it is one of the results. An off-policy step
# never generates text; we will see what that saves, and what it does not.
#
# ## 2. The DPO loss landscape
#
# DPO's and IPO's losses are functions of one number per pair, the log-ratio margin
# $h = \log\frac{\pi(y_w)}{\pi_{ref}(y_w)} - \log\frac{\pi(y_l)}{\pi_{ref}(y_l)}$ (the implicit-reward
# margin is $\beta h$). DPO's loss and its *gradient weight*, how hard one step pushes the margin up
# (Rafailov et al., arXiv:2305.18290v3, Eq. 7 for the loss, §4 for its gradient):
#
# $$ L_{DPO}(h) = -\log\sigma(\beta h), \qquad -\frac{dL}{dh} = \beta\,\sigma(-\beta h). $$
#
# The other four off-policy losses need more than $h$, which is why they behave differently:
#
# - **DPOP** subtracts $\lambda\max(0, -\log\frac{\pi(y_w)}{\pi_{ref}(y_w)})$ inside the bracket: a
#   penalty on the chosen log-ratio *alone* (Pal et al., arXiv:2402.13228v2, Eq. 3; notebook 06).
# - **TDPO** adds (α times) the difference of the two completions' sequential KLs, summed over every
#   position and the whole vocabulary (Zeng et al., arXiv:2404.11999v5, the TDPO2 loss; notebook 07).
# - **SimPO** has no reference: it compares the length-averaged log-probs of the two completions, less
#   a target margin γ (Meng et al., arXiv:2405.14734v1, §2.3).
# - **ORPO** has no reference either: the chosen completion's NLL plus λ times an odds-ratio term of
#   length-averaged log-probs (Hong et al., arXiv:2403.07691v2, Eq. 6; notebook 08).
#
# For DPO, at $h = 0$ (policy = reference) the loss is $\ln 2$ and the weight $\beta/2$ for every β.
# The weight decays but never reaches 0 (at β = 2 and h = 10 it is positive, only too small for four
# decimals): DPO keeps pushing a pair it already ranks right, which is how
# its margins (and its KL) run away. IPO's $(h - \frac{1}{2\beta})^2$ pulls the margin back to a
# finite target (Azar et al., arXiv:2310.12036v2, §5).

# %%
# NBVAL_CHECK_OUTPUT
for beta in (0.1, 0.5, 2.0):
    c = vz.preference_landscape([0.0, 10.0], beta, "dpo")
    print(f"β={beta:<4g} loss(0)={c['loss'][0]:.4f}  weight(0)={c['weight'][0]:.4f}  weight(10)={c['weight'][1]:.4f}")
assert all(math.isclose(vz.preference_landscape([0.0], b)["loss"][0], math.log(2)) for b in (0.1, 0.5, 2.0))

# %% [markdown]
# Pick several β, switch between DPO and IPO, and between the log-ratio axis $h$ and the
# implicit-reward axis $\beta h$. On the implicit axis all DPO loss curves coincide: β only rescales
# how far the log-probs must move to earn the same loss.

# %%
# NBVAL_IGNORE_OUTPUT
landscape = widgets.dpo_landscape_widget()
landscape

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. The sweep: how each method's setting was chosen (default task, `arithmetic`)
#
# A method is only as good as its settings. The off-policy loops come with small default learning
# rates (1e-5; TDPO 3e-5), set on this task in notebooks 05–08, where the on-policy loops use 3e-4.
# So that no route is held back by a step size, `make data` sweeps, for every off-policy method, its
# β grid *and* a grid of learning rates (the `lr` column below): 1e-5 to 3e-4 for the five that start
# from SFT, up to 30× the default of DPO, DPOP, IPO and SimPO and 10× TDPO's; for ORPO, which trains
# the base model at an SFT-sized 2e-3, from a third of that to 10×. The on-policy methods sweep their
# β grid at their own learning rate, which we do not sweep.
#
# The choice uses only the sweep seeds: each method gets the (β, lr) with the highest **mean** final
# gold reward over them (ties go to the lower KL). Be clear about what kind of validation that is:
# it is the *same metric* on the *same evaluation prompts* as the result (the task has few prompts,
# and the evaluation uses all of them), but on *other training runs*. The chosen settings are then
# trained again on fresh seeds, and only those runs are ranked in section 4, so the luck of the sweep
# (picking a setting because its seeds happened to do well) does not flatter the result.
#
# The table: for each method and learning rate, the best β at that rate, its mean gold over the
# sweep seeds, the min–max over them, and its mean KL; the arrow marks the chosen setting.

# %% slideshow={"slide_type": "notes"}
# NBVAL_CHECK_OUTPUT
def sweep_table(recs, m):
    chosen = m["chosen"]
    assert chosen == showdown_data.choose(recs), "the stored choice is the rule applied to the stored sweep"
    rows = showdown_data.sweep_rows(recs)
    print(f"sweep seeds {m['select_seeds']}; gold: mean and min–max over them\n")
    print(f"{'method':6s} {'lr':>6s} {'best β':>6s} {'gold':>6s} {'min–max':>12s} {'KL':>6s}")
    for method, c in chosen.items():
        for lr in m["lrs"][method]:
            at_lr = [r for r in rows if r["method"] == method and math.isclose(r["lr"], lr)]
            best = max(at_lr, key=lambda r: (r["gold_mean"], -r["kl_mean"]))
            mark = "  <- chosen" if (best["beta"], best["lr"]) == (c["beta"], c["lr"]) else ""
            print(f"{method:6s} {lr:6.0e} {best['beta']:6g} {best['gold_mean']:6.3f} "
                  f"{best['gold_min']:5.3f}–{best['gold_max']:5.3f} {best['kl_mean']:6.3f}{mark}")
    lr_edge = [f for f, c in chosen.items() if len(m["lrs"][f]) > 1 and c["lr"] == max(m["lrs"][f])]
    beta_edge = [f for f, c in chosen.items() if c["beta"] in (min(m["betas"][f]), max(m["betas"][f]))]
    print(f"\nchosen lr at the top of its grid: {', '.join(lr_edge) or 'none'}")
    print(f"chosen β at an end of its grid:   {', '.join(beta_edge) or 'none'}")
    return lr_edge, beta_edge


lr_edge, beta_edge = sweep_table(records, meta)
chosen = meta["chosen"]
default_lr = {f: runner.knob_defaults(f)["lr"] for f in chosen}
raised = [f for f, c in chosen.items() if runner.METHODS[f].family == "off-policy" and c["lr"] > default_lr[f]]
print(f"off-policy methods whose chosen lr is above their default: {', '.join(raised)}")
sweep = showdown_data.sweep_rows(records)
on_sweep = [c["gold_mean"] for f, c in chosen.items() if runner.METHODS[f].family == "on-policy"]
at_default = {f: max(r["gold_mean"] for r in sweep if r["method"] == f and math.isclose(r["lr"], default_lr[f]))
              for f in chosen if runner.METHODS[f].family == "off-policy"}
print("off-policy sweep gold, best β at the default lr -> chosen:",
      ", ".join(f"{f} {g:.3f} -> {chosen[f]['gold_mean']:.3f}" for f, g in at_default.items()))
print("on-policy sweep gold at the chosen setting:",
      ", ".join(f"{f} {c['gold_mean']:.3f}" for f, c in chosen.items() if runner.METHODS[f].family == "on-policy"))
assert set(raised) == {"dpo", "dpop", "ipo", "simpo", "tdpo"}, "every method but ORPO wants a larger step"
assert chosen["orpo"]["lr"] == default_lr["orpo"]
assert {"dpop", "ipo", "tdpo"} <= set(lr_edge)
assert all(2 * sum(g < v for v in on_sweep) > len(on_sweep) for g in at_default.values()), \
    "at its default lr each off-policy method is below most on-policy methods"
assert all(chosen[f]["gold_mean"] - at_default[f] >= 0.05 for f in raised)

# %% [markdown]
# The defaults were too timid. Every off-policy method except ORPO chose a learning rate above its
# default, and on the sweep seeds that lifted each of them by at least 0.05 (the `->` line). At
# its default rate each off-policy method was below most of the on-policy methods (the two printed
# lines together), so a comparison at
# the default rates would mostly have measured the step sizes.
#
# Several methods chose the largest rate of the grid (listed above), so their best may lie beyond it:
# the off-policy rows below are what this grid finds, not a tuned optimum. ORPO keeps its default
# rate. Where the chosen β sits at an end of its grid (listed too), one more step of β in that
# direction might also do better; that holds for both families. (SimPO's β is its own scale, it has
# no reference; ORPO's β column holds λ, the weight of its odds-ratio term.)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. The ranking on fresh seeds
#
# Each method at its chosen setting, trained again on the fresh seeds. `gold` is the task's true
# reward (1 if the sum is right, else 0): its mean over the seeds, the standard error of that mean
# (± SE), and the min–max over the seeds; `KL` is the mean KL to the SFT policy on the evaluation
# prompts (every prompt of the task), `proxy` the reward model's mean score. ORPO's row starts from
# the base model, not from SFT; its KL is still measured against the SFT policy, like every row's. The spread over
# seeds includes the evaluation's own noise, since each seed also samples its evaluation answers.

# %% slideshow={"slide_type": "notes"}
# NBVAL_CHECK_OUTPUT
def ranking_table(recs, m):
    rows = showdown_data.ranking(recs)
    start = m["start"]
    print(f"SFT start: gold {start['gold_reward']:.3f}, proxy {start['proxy_reward']:.3f}; "
          f"{rows[0]['n']} seeds {rows[0]['seeds']} per method\n")
    print(f"{'':2s} {'method':6s} {'family':10s} {'β':>5s} {'lr':>6s} {'gold ± SE':>13s} {'min–max':>12s} "
          f"{'KL':>6s} {'proxy':>6s}  {'sweep':>6s}")
    for i, r in enumerate(rows, 1):
        print(f"{i:2d} {r['method']:6s} {r['family']:10s} {r['beta']:5g} {r['lr']:6.0e} "
              f"{r['gold_reward_mean']:6.3f} ± {r['gold_reward_se']:.3f} "
              f"{r['gold_reward_min']:5.3f}–{r['gold_reward_max']:5.3f} {r['kl_to_ref_mean']:6.3f} "
              f"{r['proxy_reward_mean']:6.3f}  {m['chosen'][r['method']]['gold_mean']:6.3f}")
    return rows


ranked = ranking_table(records, meta)
print("\n'sweep' is the mean gold of the same setting on the sweep seeds, where it was chosen.")

# %% [markdown]
# When is one row really above another? Two means differ by more than noise when the difference
# exceeds about twice its standard error ($\mathrm{SE}_\Delta = \sqrt{\mathrm{SE}_a^2 + \mathrm{SE}_b^2}$,
# the seeds of two methods being independent). With this few seeds the standard error is itself rough,
# so read "2 SE" as a screen, not a test. For each method, the methods it is *clearly* above:

# %%
# NBVAL_CHECK_OUTPUT
def clear(a, b, k=2.0):
    """a's mean gold is above b's by more than k standard errors of the difference."""
    delta, se = showdown_data.difference(a, b)
    return delta > k * se


def clear_table(rows):
    for a in rows:
        above = [b["method"] for b in rows if b is not a and clear(a, b)]
        print(f"{a['method']:6s} clearly above: {', '.join(above) or '—'}")


def best_of(rows, family):
    return next(r for r in rows if r["family"] == family)


clear_table(ranked)
by = {r["method"]: r for r in ranked}
best_on, best_off = best_of(ranked, "on-policy"), best_of(ranked, "off-policy")
delta, se = showdown_data.difference(best_on, best_off)
print(f"\nbest on-policy {best_on['method']} − best off-policy {best_off['method']}: "
      f"{delta:+.3f} ± {se:.3f} (SE of the difference; {delta / se:+.1f} SE)")
lean_on = [r for r in ranked if r["family"] == "on-policy" and r is not best_on]
print("best off-policy against the other on-policy methods:",
      ", ".join(f"{r['method']} {d:+.3f} ({d / s:+.1f} SE)"
                for r in lean_on for d, s in [showdown_data.difference(best_off, r)]))
assert abs(delta) < 2 * se, "the best of each family are level within the noise"
assert {best_on["method"], best_off["method"]} == {"ppo", "dpop"}
for top_off in ("dpop", "tdpo"):
    assert all(clear(by[top_off], r) for r in lean_on), f"{top_off} is clearly above ReMax, GRPO and RLOO"
assert {b["method"] for b in ranked if clear(by["ppo"], b)} == {"remax", "grpo", "dpo", "simpo", "orpo"}
assert all(clear(r, by["orpo"]) for r in ranked if r["method"] != "orpo"), "ORPO is clearly last"
assert max(r["gold_reward_se"] for r in ranked) == by["ppo"]["gold_reward_se"]
optimistic = [r["method"] for r in ranked if r["gold_reward_mean"] < chosen[r["method"]]["gold_mean"]]
print(f"fresh seeds below the sweep seeds: {', '.join(optimistic)} ({len(optimistic)} of {len(ranked)})")
assert 2 * len(optimistic) > len(ranked)

# %% [markdown]
# What holds across the seeds:
#
# - **The top is shared.** The best on-policy method, PPO, and the best off-policy one, DPOP, end
#   level: their difference is well inside its standard error (printed above), and these seeds cannot
#   order them. PPO's seeds spread the most of any method (its min–max), so its mean is the least
#   certain in the table: it is clearly above ReMax, GRPO, DPO, SimPO and ORPO, but not clearly above
#   RLOO or IPO.
# - **Tuned off-policy beats lean on-policy.** DPOP and TDPO are each clearly above all three *lean*
#   on-policy methods (the ones without PPO's critic), ReMax, RLOO and GRPO. Under this budget and on this task, an off-policy method
#   at a good learning rate matches the best on-policy one and beats the cheaper ones.
# - **ORPO is clearly last**: it starts from the un-tuned base model, so under the same budget it must
#   learn the answer format and the preference at once.
# - **Many pairs are not ordered.** Two methods where neither appears in the other's "clearly above"
#   list differ by less than about two standard errors; another set of seeds could swap those rows.
#
# The `sweep` column shows the selection's optimism: for most methods (printed) the fresh seeds did
# worse than the sweep seeds on which the setting was chosen, as expected when a setting is
# picked because its seeds did well. That is why the ranking uses the fresh seeds only.
#
# The search was not the same size for both families: each off-policy method tried several times more
# settings than each on-policy one (its learning rates too; the counts are printed at the top). Choosing on the sweep seeds and reporting
# fresh ones keeps that from inflating the reported numbers, but a method searched more widely has more
# chances to find a good setting; the on-policy learning rates might repay a sweep too.

# %% [markdown]
# The costs that are measurements of this machine are not reproducible to the digit, so they get their
# own cell: one run of each chosen setting (the first fresh seed). Training seconds exclude the
# evaluations in every loop (the on-policy loops include their one profiled step). Peak memory is
# resident weights, gradients and Adam state plus the peak of one training step, measured with
# `torch.profiler`, but in two ways: the on-policy loops profile one of their own steps, while the
# off-policy loops do not profile themselves, so the runner replays one step from outside with a
# generic DPO-style probe (`runner.probe_offline_costs`).

# %%
# NBVAL_IGNORE_OUTPUT
cost_runs = showdown_data.select_runs(records, phase="test", seed=meta["test_seeds"][0])
cost_rows = showdown_data.summary_rows(cost_runs)
cost_columns = [c for c in showdown_data.TABLE_COLUMNS if c[0] in ("method", "family", "β", "lr", "labels",
                                                          "samples", "models", "trainable", "optim MB",
                                                          "time s", "peak MB")]
print(showdown_data.format_table(cost_rows, cost_columns))
vz.plot_costs(cost_rows)
assert by["dpop"]["seconds_mean"] < 0.5 * by["ppo"]["seconds_mean"], "the closing summary says: a fraction of PPO's time"

# %% [markdown]
# Read the time bars with the scale in mind too: the toy model is tiny and its completions short, so
# generating text is cheap here. PPO, with its critic and several epochs over each batch, pays
# several times what an off-policy loop pays; the lean on-policy loops (ReMax, GRPO, RLOO) come
# within a small factor of the off-policy loops. These seconds are this machine's, so the cell
# asserts only the one comparison the closing summary uses.
#
# Read the memory bars with the scale in mind. One toy model's weights are well under a megabyte
# (the `trainable` column counts its parameters; Adam keeps two numbers per parameter, the `optim MB`
# column), so what a method *holds* (four networks for PPO, two trainable with their Adam state; one
# for ORPO and SimPO) is a few MB, and the peak is dominated by one step's activations, which follow the batch: a DPO step scores
# 64 pairs, 128 sequences at once, a PPO minibatch 32. At the scale of a real LLM the weights, gradients
# and optimizer state dominate instead, and the `models` and `trainable` columns are what carries over:
# that is why ReMax and GRPO drop PPO's critic, and why ORPO and SimPO drop the reference.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. The reward–KL frontier
#
# Reward alone flatters whoever drifts furthest from the reference. The DPO and TDPO papers compare
# methods by the **frontier**: gold reward against KL to the reference, each method at several β
# (the labels). Up and to the left is better. The points are the sweep's runs of its first seed, each
# method at its chosen learning rate, every β of its grid: one training seed per point, so read the
# picture at the spread of section 4.

# %%
grid = showdown_data.grid_runs(records, chosen, seed=meta["select_seeds"][0])
vz.plot_frontier(grid, start=meta["start"], title="arithmetic: reward–KL frontier")

# %% [markdown]
# Which runs are on the frontier, that is, not beaten by another run with at most the same KL and at
# least the same gold reward? (You will write this test yourself in exercise 2.)

# %%
# NBVAL_CHECK_OUTPUT
on_frontier = check.frontier_mask.reference([r["final"]["kl_to_ref"] for r in grid],
                                            [r["final"]["gold_reward"] for r in grid])
for r, keep in zip(grid, on_frontier):
    if keep:
        print(f"{r['method']:6s} {r['family']:10s} β={r['beta']:<5g} lr={r['config']['lr']:.0e} "
              f"KL {r['final']['kl_to_ref']:.3f}  gold {r['final']['gold_reward']:.3f}")
families = {r["family"] for r, keep in zip(grid, on_frontier) if keep}
print(f"families on the frontier: {', '.join(sorted(families))}")
assert families == {"on-policy", "off-policy"}

# %% [markdown]
# Both families hold points of the frontier: at this budget neither route dominates the other across
# the range of KL. (One seed per point: neighbours on the frontier that differ by a few hundredths are
# level within the spread of section 4.)
#
# ## 6. Gold against proxy: reward-model over-optimisation
#
# Plotting gold and proxy reward over training shows the classic failure of optimising a learned
# reward: the proxy keeps rising while the gold reward turns down. We flag a run when its gold reward
# fell by at least 0.03 after its peak while its proxy did not fall. Only an on-policy method can
# *exploit* the reward model, since only it queries the model; for an off-policy run a flag just means
# the two rewards disagree about where it went.

# %%
# NBVAL_CHECK_OUTPUT
flagged = []
for r in grid:
    o = showdown_data.over_optimisation(r["history"])
    if o["flagged"]:
        flagged.append(r)
        print(f"{r['method']:6s} β={r['beta']:<5g} gold peak {o['gold_peak']:.3f} -> end {o['gold_end']:.3f}, "
              f"proxy {o['proxy_gain']:+.3f} after the peak")
print(f"{len(flagged)} of {len(grid)} runs: the gold reward fell after its peak while the proxy did not fall")

# %%
weakest_leash = [min(showdown_data.select_runs(grid, method=m), key=lambda r: r["beta"])
                 for m in ("ppo", "grpo", "rloo", "remax")]
shown = flagged[:8] + [r for r in weakest_leash if r not in flagged][: max(0, 8 - len(flagged))]
print(f"drawn: the first {min(8, len(flagged))} flagged runs"
      + (f" and {len(shown) - len(flagged)} on-policy runs with the weakest leash" if len(shown) > len(flagged) else ""))
vz.plot_gold_vs_proxy(shown, title="gold (solid) vs proxy (dashed)")
exploited = {(r["method"], r["beta"]) for r in flagged if runner.METHODS[r["method"]].family == "on-policy"}
assert {("ppo", 0.01), ("grpo", 0.01), ("grpo", 0.04)} <= exploited   # the runs the text reads below

# %% [markdown]
# Read the list with the two families apart. The on-policy runs with the weakest leash show the
# classic picture: in the panels of PPO and GRPO at β = 0.01 and GRPO at β = 0.04 the gold reward
# falls from its peak while the proxy keeps climbing. The off-policy runs in the list never queried
# the proxy (for them it is measured, not used); their flag says that the reward model, trained on the
# same pairs, misjudges where such a run went. And a flag is a screen, not a diagnosis: its threshold,
# 0.03, is six answers of the 200 evaluation prompts, so one lucky evaluation can make a peak (PPO at
# its chosen β = 0.8 reads as a noisy plateau rather than a decline). The figure shows at most eight
# runs, in the order of the list; any further flagged runs are only in the list.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. A live re-run: are the stored numbers real?
#
# We train one of the ranked runs again, now: DPO at its chosen setting, on the first fresh seed, with
# the same budget, and compare every logged point of its curves with the stored record.
#
# Tolerance: on the machine that built `data/` the two runs are bit-identical (one thread, fixed seeds).
# Another CPU may round float sums differently, which can flip a sampled token whose probability sits at
# a threshold of the sampler; one flipped answer among the 200 evaluation prompts moves the gold reward
# by 1/200 = 0.005, and the proxy and KL by that answer's own change divided by 200. We accept 0.03 on
# the gold reward (six answers) and 0.05 on proxy and KL. Such a machine reproduces each run to within that tolerance, not to the
# digit; read it against the seed-to-seed spreads of section 4.

# %%
# NBVAL_IGNORE_OUTPUT
from teachkit.toy.world import load_world

live_cfg = meta["live"]
assert (live_cfg["beta"], live_cfg["lr"]) == (chosen[live_cfg["method"]]["beta"], chosen[live_cfg["method"]]["lr"])
world = load_world(live_cfg["task"])
stored = showdown_data.select_runs(records, method=live_cfg["method"], phase="test", seed=live_cfg["seed"])[0]
live = runner.run_method(world, live_cfg["method"], live_cfg["beta"], budget, seed=live_cfg["seed"],
                         eval_points=meta["eval_points"], lr=live_cfg["lr"])
diff = showdown_data.compare_records(stored, live)
tolerance = {"gold_reward": 0.03, "proxy_reward": 0.05, "kl_to_ref": 0.05}
within = {k: v <= tolerance[k.split(".")[1]] for k, v in diff.items()}
print(f"re-ran {live_cfg['method']} β={live_cfg['beta']:g} lr={live_cfg['lr']:.0e} seed {live_cfg['seed']} on "
      f"{live_cfg['task']}: {len(live['history']['step'])} logged points, final gold {live['final']['gold_reward']:.2f}")
print("within tolerance:", all(within.values()))
assert all(within.values()), {k: round(v, 4) for k, v in diff.items()}

# %% [markdown]
# The table row of that run, rebuilt from the live run, agrees with the stored one:

# %%
# NBVAL_IGNORE_OUTPUT
result_columns = [c for c in showdown_data.TABLE_COLUMNS if c[0] not in ("time s", "peak MB")]
stored_row, live_row = showdown_data.summary_rows([stored])[0], showdown_data.summary_rows([live])[0]
for key in ("gold_reward", "proxy_reward", "kl_to_ref", "labels_used", "samples_generated", "models_held",
            "trainable_params", "lr"):
    assert abs(stored_row[key] - live_row[key]) <= tolerance.get(key, 0.0), key
print(showdown_data.format_table([{**stored_row, "method": "stored"}, {**live_row, "method": "live"}], result_columns))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. A second task: the optimum where SFT rarely goes
#
# `length`: the prompt `k:` asks for exactly k letters, and the gold reward is $1 - |n - k|/6$. The
# demonstrator mostly ignored k and wrote about two letters, so the SFT policy rarely writes five or
# six. The preference pairs are two SFT samples ranked by the gold reward: for k = 5 or 6 the chosen
# completion is usually just *less wrong*. On-policy methods sample, get scored, and can walk the
# length distribution to where the reward is; an offline method sees only the pairs it was given.

# %%
# NBVAL_CHECK_OUTPUT
coverage, lstart = length_meta["pair_coverage"], length_meta["start"]
print(f"{'k':>2s} {'pairs':>6s} {'chosen has exactly k':>21s} {'SFT writes exactly k':>21s}")
for k in range(1, 7):
    print(f"{k:2d} {coverage[f'pairs_k{k}']:6.0f} {coverage[f'chosen_exact_k{k}']:21.2f} {lstart[f'exact_k{k}']:21.2f}")

# %% [markdown]
# The same protocol as on `arithmetic`, run separately on this task: the sweep (each method's
# learning rates and β chosen *here*, not carried over), then the chosen settings on fresh seeds.
# Below the tables, two figures: the frontier (the sweep's first seed, each method at its chosen
# learning rate), and per target k the fraction of samples with exactly k letters, each method at its
# chosen setting averaged over its fresh seeds, with the pairs' chosen completions as grey bars.

# %%
# NBVAL_CHECK_OUTPUT
length_lr_edge, length_beta_edge = sweep_table(length_records, length_meta)
print()
length_ranked = ranking_table(length_records, length_meta)
print()
clear_table(length_ranked)

# %%
length_chosen = length_meta["chosen"]
vz.plot_frontier(showdown_data.grid_runs(length_records, length_chosen, seed=length_meta["select_seeds"][0]),
                 start=lstart, title="length: reward–KL frontier")


def seed_mean_record(recs, method):
    """One record per method for the plot: its fresh-seed runs with ``final`` averaged over the seeds."""
    rs = showdown_data.select_runs(recs, method=method, phase="test")
    final = {k: sum(r["final"][k] for r in rs) / len(rs) for k in rs[0]["final"]}
    return {**rs[0], "final": final}


vz.plot_exact_by_target([seed_mean_record(length_records, r["method"]) for r in length_ranked], lstart, coverage)

# %% [markdown]
# The hard targets are k = 5 and 6. For every run we average the fraction of samples with exactly k
# letters over those two targets (the *hard-target hit*), and average that over each method's fresh
# seeds:

# %%
# NBVAL_CHECK_OUTPUT
def hard_hit(final):
    return (final["exact_k5"] + final["exact_k6"]) / 2


hard = {}
for r in length_ranked:
    hits = [hard_hit(x["final"]) for x in showdown_data.select_runs(length_records, method=r["method"], phase="test")]
    hard[r["method"]] = (sum(hits) / len(hits), min(hits), max(hits))
print(f"SFT: hard-target hit {hard_hit(lstart):.2f};  pairs whose chosen is exact: "
      f"{(coverage['chosen_exact_k5'] + coverage['chosen_exact_k6']) / 2:.2f}\n")
print(f"{'method':6s} {'family':10s} {'hard-target hit':>15s} {'min–max':>10s} {'gold':>6s}")
for r in length_ranked:
    mean, lo, hi = hard[r["method"]]
    print(f"{r['method']:6s} {r['family']:10s} {mean:15.2f} {lo:4.2f}–{hi:4.2f} {r['gold_reward_mean']:6.3f}")

# %% [markdown]
# And the comparisons the prose below rests on:

# %%
# NBVAL_CHECK_OUTPUT
lby = {r["method"]: r for r in length_ranked}
on_rows = [r for r in length_ranked if r["family"] == "on-policy"]
off_rows = [r for r in length_ranked if r["family"] == "off-policy"]
lean = [lby[m] for m in ("rloo", "remax", "grpo")]
per_seed_hits = {m: [hard_hit(x["final"]) for x in showdown_data.select_runs(length_records, method=m, phase="test")]
                 for m in lby}
lsweep = showdown_data.sweep_rows(length_records)
l_at_default = {f: max(r["gold_mean"] for r in lsweep if r["method"] == f and math.isclose(r["lr"], default_lr[f]))
                for f in ("dpo", "dpop", "ipo", "simpo", "tdpo")}
print(f"SFT gold {lstart['gold_reward']:.3f}; off-policy sweep gold, best β at the default lr -> chosen:")
print("  " + ", ".join(f"{f} {g:.3f} -> {length_chosen[f]['gold_mean']:.3f}" for f, g in l_at_default.items()))
print(f"lowest on-policy mean {min(r['gold_reward_mean'] for r in on_rows):.3f}, "
      f"highest off-policy mean {max(r['gold_reward_mean'] for r in off_rows):.3f}")
print(f"hard-target hit, lowest seed of RLOO, ReMax, GRPO: {min(min(per_seed_hits[r['method']]) for r in lean):.2f}; "
      f"highest seed of any off-policy method: {max(max(per_seed_hits[r['method']]) for r in off_rows):.2f}")
assert min(r["gold_reward_mean"] for r in on_rows) > max(r["gold_reward_mean"] for r in off_rows)
assert all(clear(a, b) for a in lean for b in off_rows), "each lean on-policy method is clearly above every off-policy one"
assert {b["method"] for b in length_ranked if clear(lby["ppo"], b)} == {"tdpo", "orpo", "dpop"}
assert max(r["gold_reward_se"] for r in length_ranked) == lby["ppo"]["gold_reward_se"]
assert all(abs(l_at_default[f] - lstart["gold_reward"]) < 0.03 for f in ("dpo", "dpop", "ipo", "simpo")), \
    "at the default lr 1e-5 they barely leave SFT"
assert all(length_chosen[f]["gold_mean"] - l_at_default[f] > 0.1 for f in ("dpo", "ipo", "simpo", "tdpo"))
assert max(r["gold_reward_mean"] for r in on_rows) - max(r["gold_reward_mean"] for r in off_rows) < 0.05
assert length_ranked[-1]["method"] == "dpop" and min(length_ranked, key=lambda r: r["kl_to_ref_mean"])["method"] == "dpop"
assert min(min(per_seed_hits[r["method"]]) for r in lean) > max(max(per_seed_hits[r["method"]]) for r in off_rows)
exact_pairs = (coverage["chosen_exact_k5"] + coverage["chosen_exact_k6"]) / 2
assert all(min(per_seed_hits[m]) > 2 * max(exact_pairs, hard_hit(lstart)) for m in ("dpo", "ipo", "simpo"))

# %% [markdown]
# What holds across the seeds on `length`:
#
# - **On-policy wins here.** Every on-policy method's mean is above every off-policy method's, and
#   RLOO, ReMax and GRPO are each clearly above every off-policy method. PPO's seeds spread widest
#   again (its min–max), so it is clearly above only TDPO, ORPO and DPOP, and level with DPO, IPO and
#   SimPO.
# - **The step size matters even more here.** At their default rate (1e-5) DPO, DPOP, IPO and SimPO
#   hardly moved from the SFT policy (the `->` line). At the chosen rates DPO, IPO, SimPO and TDPO gain
#   a tenth or more, and the best of them come within a few hundredths of the on-policy methods, but
#   stay below them. DPOP is the exception: its
#   penalty on the chosen log-ratio holds it near the reference (the smallest KL in the table), and it
#   is last.
# - **The hard targets.** On every seed, RLOO, ReMax and GRPO write exactly five or six letters more
#   often than any off-policy run does. The best off-policy methods (DPO, IPO, SimPO) still get there
#   more than twice as often as SFT does, and more than twice as often as the pairs' chosen
#   completions are exact: pairs that only say "closer is better" point the way, and a large enough
#   step follows them most of the way, not all of it.
#
# Both tasks, read together. On `arithmetic`, where part of the pairs hold the right answer itself
# (right against off by one), a tuned off-policy method ends level with PPO and clearly above the lean
# on-policy methods, at a fraction of PPO's time. On `length`, where for the long
# targets most chosen completions miss the optimum (the coverage table), the on-policy methods end
# above every off-policy one. That is the rule of thumb of the introduction,
# with a correction this notebook measured the hard way: off-policy is as good as the match between its
# data and the optimum, *and* as its step size; compare the routes only after tuning both. Two limits
# on that tuning here: the on-policy learning rate was not swept, and on both tasks some chosen
# off-policy learning rates sit at the top of their grid (listed with each sweep), so a wider grid
# might lift those rows further.
#
# ## 9. Explore: a method and its knobs
#
# Pick a method and β to see stored curves (gold, proxy, KL over the labels spent): the sweep's runs of
# its first seed on `arithmetic`. The knobs (learning rate, clip ε, group size, GAE λ, DPOP λ) are
# enabled for the methods that have them and start at the loops' defaults, where the stored runs sit;
# for an off-policy method that is its *default* learning rate, not the chosen one. The lr slider moves
# in half-decades, so of the swept rates it lands on 1e-5 and 1e-4, which show their stored runs too;
# any other setting shows nothing until you press **train live**, which trains that configuration now
# on a quarter of the budget (a few seconds) and overlays it.

# %%
# NBVAL_IGNORE_OUTPUT
small_budget = runner.Budget(labels=budget.labels // 4)


def live_run(method, beta, **knobs):
    return runner.run_method(world, method, beta, small_budget, eval_points=6, **knobs)["history"]


explorer = widgets.method_explorer(showdown_data.select_runs(records, phase="select", seed=meta["select_seeds"][0]),
                                   live=live_run)
explorer

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# **1. DPO's gradient weight.** Write `my_weight(h, beta)`: for a tensor of log-ratio margins `h`,
# return $-\frac{dL}{dh}$ of $L = -\log\sigma(\beta h)$, elementwise. It must stay finite for $|h| = 10^4$.

# %%
def my_weight(h, beta):
    raise NotImplementedError  # YOUR CODE HERE


check.dpo_gradient_weight(my_weight)

# %% [markdown]
# **2. The reward–KL frontier.** Write `my_frontier(kl, reward)`: given two 1-D arrays (one entry per
# run), return a boolean array that is True for the runs on the frontier: no other run has KL ≤ and
# reward ≥, with at least one of the two strict. Two identical runs do not beat each other.

# %%
def my_frontier(kl, reward):
    raise NotImplementedError  # YOUR CODE HERE


check.frontier_mask(my_frontier)
