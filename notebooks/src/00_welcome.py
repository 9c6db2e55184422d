# %% [markdown] slideshow={"slide_type": "slide"}
# # 00 · Welcome to teachkit
#
# This course builds two things from scratch, on a laptop CPU, in small steps you can run:
#
# 1. **The RLHF family** on a toy world: PPO, ReMax and GRPO (on-policy), then DPO, DPOP, TDPO and
#    ORPO (off-policy), and a fair showdown between the two routes.
# 2. **A PowerInfer-2-style sparse inference engine**: activation sparsity, predictors, neuron
#    clusters, numba kernels, weights on "flash", a segmented neuron cache, an I/O–compute pipeline
#    and an offline planner.
#
# ## How the course works
#
# - **Notebooks teach, the library remembers.** Each notebook derives a new idea and writes its
#   code *in view*. The same code lives, tested, in the `teachkit` package, so the next notebook can
#   `import` it instead of repeating it. A notebook usually checks that its inline version equals the
#   library's.
# - **Everything is small and seeded.** Models train in seconds on two CPU cores. Re-running a
#   notebook on the same machine gives the same numbers; that is also how the course is tested (with
#   `nbval`).
# - **Your numbers may differ in the last digits.** Another CPU (AVX2 or AVX-512, Apple silicon) or
#   another BLAS library adds floating-point numbers in another order, so the stored outputs and yours
#   can differ in the last printed digits, and a reinforcement-learning run, which amplifies small
#   differences, can take a visibly different path. The notebooks therefore assert what must hold on
#   every such path, often over several seeds, never the exact digits of one run. The course's tests
#   run every notebook on two rounding paths to keep it that way.
# - **Every notebook ends with exercises.** You write a function; `teachkit.check` compares it with the
#   reference on seeded inputs and checks the properties that matter, and names the one that fails.
# - **Two commands.** `make lab` opens this course; `make test` runs every test and every notebook.
#   `make data` rebuilds the stored checkpoints and `make bench` runs the speed benchmarks.
#
# | part | notebooks |
# |---|---|
# | start here | 00 welcome |
# | toy world | 01 toy world: tiny GPT, tasks, SFT, reward model |
# | on-policy | 02 PPO · 03 ReMax · 04 GRPO |
# | off-policy | 05 DPO · 06 DPOP · 07 TDPO · 08 ORPO |
# | showdown | 09 on- vs off-policy |
# | sparse inference | 10 activation sparsity · 11 clusters and kernels · 12 flash and cache · 13 pipeline · 14 planner and engine |

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. Is this kernel the right environment?
#
# The most common first-day problem is a JupyterLab attached to a kernel from *another* Python
# environment. The check below reads the version ranges that teachkit declares and compares them with
# what this kernel has. Every line should say `OK`; a `FAIL` line tells you what to do.

# %%
# NBVAL_IGNORE_OUTPUT
import sys

from teachkit import envcheck

print("kernel:", sys.executable)
environment_ok = envcheck.report()

# %% [markdown]
# What decides the last digits of your numbers: the vector instructions torch's kernels use on this
# CPU, and how many threads it may use (the course's `make` commands set one thread per kernel, which
# keeps runs repeatable).

# %%
# NBVAL_IGNORE_OUTPUT
import os
import platform

import torch

print("machine:", platform.machine(), "·", platform.system(), "·", os.cpu_count(), "logical CPUs")
print("torch kernels use:", torch.backends.cpu.get_cpu_capability(), "· threads:", torch.get_num_threads())

# %%
assert environment_ok, "fix the FAIL lines above, then restart the kernel"

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. A short tour of the library
#
# | module | what it holds |
# |---|---|
# | `teachkit.toy` | the toy world: tiny GPT, tasks with gold rewards, generation, SFT, reward model |
# | `teachkit.rlhf` | pure functions: losses, advantages, KL estimators, masks |
# | `teachkit.sparse` | sparsity statistics, predictors, numba kernels, flash file, cache, pipeline, engine |
# | `teachkit.check` | the exercise checkers |
# | `teachkit.viz` | every plot of the course, in one style |
# | `teachkit.artifacts` | versioned, checksummed files in `data/` |
#
# One convention runs through the whole RLHF half: a **mask** marks which tokens count. Padding after
# the end of a completion may hold anything, even `NaN`. Multiplying by the mask does *not* remove a
# `NaN` (`NaN × 0 = NaN`), so the library *selects* instead:

# %%
# NBVAL_CHECK_OUTPUT
import torch

from teachkit.rlhf import masked_mean

values = torch.tensor([[0.5, 1.5, float("nan")],
                       [2.0, float("nan"), float("nan")]])
mask = torch.tensor([[1, 1, 0],
                     [1, 0, 0]])
print("multiply then average:", ((values * mask).sum() / mask.sum()).item())
print("select then average:  ", round(masked_mean(values, mask).item(), 4))

# %% [markdown]
# Plots come from `teachkit.viz`, which fixes one size and style so figures look the same in class
# and on the web. Here is the logistic function σ(z), the probability that the chosen answer of a
# preference pair beats the rejected one when their rewards differ by z. You will meet it again in
# the reward model and in DPO; the next exercise asks for the loss built from it.

# %%
from teachkit import viz

z = torch.linspace(-6, 6, 200)
fig, ax = viz.figure()
ax.plot(z, torch.sigmoid(z), label="σ(z) = 1 / (1 + e^(−z))")
ax.axhline(0.5, ls=":", c="gray", label="σ(0) = 1/2: a coin flip")
ax.set_xlabel("z = reward(chosen) − reward(rejected)")
ax.set_ylabel("P(chosen beats rejected)")
ax.legend()
viz.show(fig)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. How exercises are checked: a worked example
#
# **Exercise 0.1.** Write `masked_mean(x, mask)`: the mean of `x` over the entries where `mask == 1`.
#
# Here is a first attempt that looks right:

# %%
# NBVAL_CHECK_OUTPUT
from teachkit import check


def masked_mean_attempt(x, mask):
    return (x * mask).sum() / mask.sum()


result = check.masked_mean(masked_mean_attempt)

# %% [markdown]
# The checker ran its properties in order and stopped at the first one that failed. Read the report
# from the top:
#
# - **which check of how many**: the checks before it passed, the ones after it were not run (a
#   later check may fail too once this one passes);
# - **failed**: the property your function broke, stated as a fact;
# - **why**: the input it was given and what came back, against what was expected;
# - **hint**: the first of three hints, the *idea* only, so that you still do the thinking.
#
# If the idea is not enough, ask for the next hint. Level 2 gives the formula, level 3 the shape of
# the code:

# %%
# NBVAL_CHECK_OUTPUT
check.hint("masked_mean", 2)

# %% [markdown]
# The fix is to select with `torch.where` rather than multiply:

# %%
# NBVAL_CHECK_OUTPUT
def masked_mean_fixed(x, mask):
    keep = mask.bool()
    return torch.where(keep, x, torch.zeros_like(x)).sum() / keep.sum()


result = check.masked_mean(masked_mean_fixed)
assert result.passed

# %% [markdown]
# When you are stuck for good, or have passed and want to compare, `check.solution(name)` prints a
# reference solution: plain, self-contained code that imports only torch (or numpy), which you can
# read, copy into a cell and run. Try the hints first; the solution is there so that no exercise
# blocks the rest of the course.

# %%
# NBVAL_CHECK_OUTPUT
check.solution("masked_mean")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# **Exercise 0.2.** Write `neg_log_sigmoid(z)`, the elementwise −log σ(z), so that it is exact at
# z = 0 (where it equals ln 2) and stays finite in float32 for z = ±200. The naive
# `-torch.log(torch.sigmoid(z))` fails one of the checks: find out which, then fix it.
#
# Replace `raise NotImplementedError` with your code and run the cell below it. Until you do, the
# checker says the exercise is not attempted yet. If a check fails, its hint is the idea;
# `check.hint("neg_log_sigmoid", 2)` and `check.hint("neg_log_sigmoid", 3)` go further, and
# `check.solution("neg_log_sigmoid")` shows the code.

# %%
def neg_log_sigmoid(z):
    # YOUR CODE HERE
    raise NotImplementedError


_ = check.neg_log_sigmoid(neg_log_sigmoid)
