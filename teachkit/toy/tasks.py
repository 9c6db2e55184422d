"""Toy tasks: a tokenizer, a prompt sampler, a gold reward written as code, and readable printing.

Two tasks (``get_task(name)``):

``"arithmetic"`` (``DEFAULT_TASK``, the course default for notebooks 02–09)
    Prompt ``a+b=`` with a, b ∈ 0..9 (100 prompts), completion: the digits of a + b, then EOS.
    Gold reward 1 if the completion is exactly right (EOS included), else 0. A wrong answer
    ``a+b±1`` differs from the right one by one token (``7`` vs ``8``, ``14`` vs ``15``): the
    low-edit-distance regime in which DPO lowers the likelihood of the chosen answer.
    The demonstrator is careless with carries: without a carry (a + b ≤ 9) it is right 80% of the
    time, off by one otherwise; with a carry it is right only 35% of the time and usually writes one
    too many (50%). An SFT model imitates that: decent (the stored reference: ≈57% sampled,
    ≈74% greedy), far from the optimum of 1, and still with non-trivial probability on the right
    answer everywhere.

``"length"`` (the bandit whose optimum lies where SFT puts little probability)
    Prompt ``k:`` with a target length k ∈ 1..6; completion: letters ``a``/``b``, then EOS.
    Gold reward 1 − |n − k| / 6 for n letters before EOS (0 if there is no EOS or another symbol).
    The demonstrator mostly ignores k: it writes a geometric number of letters (mean 2) and only
    15% of the time exactly k. For k = 5 or 6 the SFT policy rarely writes k letters, so offline
    pairs built from its samples rarely contain the optimum, while on-policy sampling can walk the
    length distribution towards it.
"""

from __future__ import annotations

import torch

from .generate import Rollout, eos_mask

__all__ = ["Tokenizer", "Task", "ArithmeticTask", "LengthTask", "get_task", "TASKS", "DEFAULT_TASK"]

DEFAULT_TASK = "arithmetic"


class Tokenizer:
    """Symbols are single characters, plus special names in angle brackets (``<pad>``, ``<eos>``).

    ``encode("3+4=")`` -> ``[5, 12, 6, 13]``; ``decode`` inverts it. ``pad_id = 0``, ``eos_id = 1``.
    """

    def __init__(self, symbols: list[str]):
        if symbols[:2] != ["<pad>", "<eos>"]:
            raise ValueError("the first two symbols must be '<pad>' and '<eos>'")
        if len(set(symbols)) != len(symbols):
            raise ValueError("symbols must be distinct")
        self.symbols = list(symbols)
        self.ids = {s: i for i, s in enumerate(symbols)}
        self.pad_id, self.eos_id = 0, 1

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def encode(self, text: str) -> list[int]:
        out, i = [], 0
        while i < len(text):
            if text[i] == "<" and ">" in text[i:]:
                sym = text[i:text.index(">", i) + 1]
            else:
                sym = text[i]
            if sym not in self.ids:
                raise ValueError(f"unknown symbol {sym!r} in {text!r}; the vocabulary is {self.symbols}")
            out.append(self.ids[sym])
            i += len(sym)
        return out

    def decode(self, ids) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        for i in ids:
            if not 0 <= int(i) < self.vocab_size:
                raise ValueError(f"token id {i} is outside the vocabulary [0, {self.vocab_size})")
        return "".join(self.symbols[int(i)] for i in ids)

    def __repr__(self) -> str:
        return f"Tokenizer({self.vocab_size} symbols: {' '.join(self.symbols)})"


class Task:
    """Base class: subclasses set ``name``, ``tokenizer``, ``prompt_len``, ``max_new_tokens``."""

    name: str
    tokenizer: Tokenizer
    prompt_len: int
    max_new_tokens: int

    eval_repeats: int = 1

    @property
    def block_size(self) -> int:
        return self.prompt_len + self.max_new_tokens

    def all_prompts(self) -> torch.Tensor:
        raise NotImplementedError

    def eval_prompts(self) -> torch.Tensor:
        """The fixed evaluation prompts: every prompt of the task, ``eval_repeats`` times."""
        return self.all_prompts().repeat(self.eval_repeats, 1)

    def _check(self, prompts, completions=None, mask=None) -> None:
        if not isinstance(prompts, torch.Tensor) or prompts.dim() != 2 or prompts.shape[1] != self.prompt_len:
            raise ValueError(f"{self.name}: prompts must be a (B, {self.prompt_len}) tensor, got "
                             + (str(tuple(prompts.shape)) if isinstance(prompts, torch.Tensor) else type(prompts).__name__))
        if completions is not None:
            if not isinstance(completions, torch.Tensor) or completions.dim() != 2 \
                    or completions.shape[0] != prompts.shape[0]:
                raise ValueError(f"{self.name}: completions must be (B, T) with B = {prompts.shape[0]}")
            if mask is not None and (not isinstance(mask, torch.Tensor) or mask.shape != completions.shape):
                raise ValueError(f"{self.name}: mask must have the shape of completions {tuple(completions.shape)}")

    def _rows(self, completions, mask) -> list[list[int]]:
        """Each completion's tokens under the mask, as Python lists."""
        keep = mask.bool().cpu() if mask is not None else eos_mask(completions, self.tokenizer.eos_id).bool()
        return [row[k].tolist() for row, k in zip(completions.cpu(), keep)]

    def sample_prompts(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def gold_reward(self, prompts, completions, mask) -> torch.Tensor:
        raise NotImplementedError

    def demonstrations(self, n: int, generator: torch.Generator | None = None) -> Rollout:
        raise NotImplementedError

    def encode_completions(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad encoded texts to ``max_new_tokens`` columns: (completions, mask)."""
        rows = [self.tokenizer.encode(t) for t in texts]
        if any(len(r) > self.max_new_tokens for r in rows):
            raise ValueError(f"a completion is longer than max_new_tokens={self.max_new_tokens}")
        out = torch.full((len(rows), self.max_new_tokens), self.tokenizer.pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask = eos_mask(out, self.tokenizer.eos_id)
        mask[out.eq(self.tokenizer.pad_id) & mask.bool()] = 0.0  # a row without EOS ends at its text
        return out, mask

    def format(self, prompt, completion, mask=None) -> str:
        """One sample as text: ``3+4= → 7<eos>`` (a cut-off completion ends with ``…``)."""
        tokens = self._rows(completion[None], None if mask is None else mask[None])[0]
        text = self.tokenizer.decode(tokens)
        if self.tokenizer.eos_id not in tokens:
            text += "…"
        return f"{self.tokenizer.decode(prompt)} → {text}"

    def show(self, prompts, completions, mask=None, rewards=None, n: int = 8) -> None:
        """Print up to ``n`` samples with their gold reward (or the given ``rewards``)."""
        self._check(prompts, completions, mask)
        if mask is None:
            mask = eos_mask(completions, self.tokenizer.eos_id)
        if rewards is None:
            rewards = self.gold_reward(prompts, completions, mask)
        for i in range(min(n, prompts.shape[0])):
            print(f"{self.format(prompts[i], completions[i], mask[i]):<24s} reward {float(rewards[i]):+.3f}")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, vocab_size={self.tokenizer.vocab_size}, "
                f"prompt_len={self.prompt_len}, max_new_tokens={self.max_new_tokens})")


class ArithmeticTask(Task):
    """``a+b=`` → digits of a + b, EOS. Gold reward: 1 for the exact answer, else 0."""

    name = "arithmetic"
    prompt_len = 4
    max_new_tokens = 3
    eval_repeats = 2  # 200 evaluation prompts
    p_correct_no_carry = 0.80
    p_correct_carry = 0.35
    p_plus_one_carry = 0.50

    def __init__(self):
        self.tokenizer = Tokenizer(["<pad>", "<eos>", *"0123456789", "+", "="])

    def prompts_for(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ids = self.tokenizer.ids
        plus = torch.full_like(a, ids["+"])
        eq = torch.full_like(a, ids["="])
        return torch.stack([a + ids["0"], plus, b + ids["0"], eq], dim=1)

    def all_prompts(self) -> torch.Tensor:
        """Every prompt once, (100, 4), in the order 0+0, 0+1, ..., 9+9."""
        a, b = torch.meshgrid(torch.arange(10), torch.arange(10), indexing="ij")
        return self.prompts_for(a.reshape(-1), b.reshape(-1))

    def sample_prompts(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        ab = torch.randint(0, 10, (int(n), 2), generator=generator)
        return self.prompts_for(ab[:, 0], ab[:, 1])

    def operands(self, prompts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(prompts)
        zero = self.tokenizer.ids["0"]
        a, b = prompts[:, 0] - zero, prompts[:, 2] - zero
        if (a < 0).any() or (a > 9).any() or (b < 0).any() or (b > 9).any():
            raise ValueError("arithmetic prompts must look like 'a+b=' with digits a and b")
        return a, b

    def answers(self, prompts: torch.Tensor) -> torch.Tensor:
        """The correct sums a + b, (B,)."""
        a, b = self.operands(prompts)
        return a + b

    def completions_for(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Completions that write the integers ``values`` (e.g. an answer off by one): (completions, mask)."""
        if (values < 0).any() or (values > 99).any():
            raise ValueError("values must be integers in 0..99")
        return self.encode_completions([f"{int(v)}<eos>" for v in values])

    def gold_reward(self, prompts, completions, mask) -> torch.Tensor:
        self._check(prompts, completions, mask)
        want = self.answers(prompts)
        rows = self._rows(completions, mask)
        eos, zero = self.tokenizer.eos_id, self.tokenizer.ids["0"]
        out = torch.zeros(len(rows))
        for i, (row, c) in enumerate(zip(rows, want.tolist())):
            target = [zero + int(d) for d in str(c)] + [eos]
            out[i] = float(row == target)
        return out

    def demonstrations(self, n: int, generator: torch.Generator | None = None) -> Rollout:
        """The imperfect demonstrator (right ≈60% of the time; see the module docstring)."""
        prompts = self.sample_prompts(n, generator)
        c = self.answers(prompts)
        u = torch.rand(int(n), generator=generator)
        carry = c >= 10
        p_ok = torch.where(carry, torch.tensor(self.p_correct_carry), torch.tensor(self.p_correct_no_carry))
        p_up = torch.where(carry, torch.tensor(self.p_plus_one_carry), (1 - p_ok) / 2)
        up = (u >= p_ok) & (u < p_ok + p_up)
        down = u >= p_ok + p_up
        values = c + up.long() - down.long()
        values = torch.where(values < 0, c + 1, values)  # 0 - 1 is not a digit: write 1 instead
        completions, mask = self.completions_for(values)
        return Rollout(prompts, completions, mask)


class LengthTask(Task):
    """``k:`` → k letters (a/b), EOS. Gold reward: 1 − |n − k| / 6, 0 without EOS or with a bad symbol."""

    name = "length"
    prompt_len = 2
    max_new_tokens = 8
    eval_repeats = 32  # 192 evaluation prompts
    max_target = 6
    p_exact = 0.15
    p_stop = 0.5  # geometric length: P(n) = p_stop (1 - p_stop)^(n - 1), mean 2

    def __init__(self):
        self.tokenizer = Tokenizer(["<pad>", "<eos>", *"123456", ":", "a", "b"])

    def prompts_for(self, k: torch.Tensor) -> torch.Tensor:
        ids = self.tokenizer.ids
        return torch.stack([k - 1 + ids["1"], torch.full_like(k, ids[":"])], dim=1)

    def all_prompts(self) -> torch.Tensor:
        return self.prompts_for(torch.arange(1, self.max_target + 1))

    def sample_prompts(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.prompts_for(torch.randint(1, self.max_target + 1, (int(n),), generator=generator))

    def targets(self, prompts: torch.Tensor) -> torch.Tensor:
        self._check(prompts)
        k = prompts[:, 0] - self.tokenizer.ids["1"] + 1
        if (k < 1).any() or (k > self.max_target).any():
            raise ValueError(f"length prompts must look like 'k:' with k in 1..{self.max_target}")
        return k

    def lengths(self, completions, mask) -> torch.Tensor:
        """Letters before EOS, (B,); -1 for a completion without EOS or with a non-letter symbol."""
        letters = {self.tokenizer.ids["a"], self.tokenizer.ids["b"]}
        out = torch.full((completions.shape[0],), -1, dtype=torch.long)
        for i, row in enumerate(self._rows(completions, mask)):
            if row and row[-1] == self.tokenizer.eos_id and all(t in letters for t in row[:-1]):
                out[i] = len(row) - 1
        return out

    def gold_reward(self, prompts, completions, mask) -> torch.Tensor:
        self._check(prompts, completions, mask)
        k = self.targets(prompts)
        n = self.lengths(completions, mask)
        r = 1.0 - (n - k).abs().float() / self.max_target
        return torch.where(n >= 0, r.clamp(min=0.0), torch.zeros_like(r))

    def demonstrations(self, n: int, generator: torch.Generator | None = None) -> Rollout:
        """Mostly k-blind geometric lengths (mean 2), exactly k letters 15% of the time."""
        n = int(n)
        prompts = self.sample_prompts(n, generator)
        k = self.targets(prompts)
        geo = torch.ones(n, dtype=torch.long)
        going = torch.ones(n, dtype=torch.bool)
        for _ in range(self.max_new_tokens - 2):  # geometric, capped at max_new_tokens - 1 letters
            going &= torch.rand(n, generator=generator) >= self.p_stop
            geo += going.long()
        exact = torch.rand(n, generator=generator) < self.p_exact
        length = torch.where(exact, k, geo)
        letters = torch.randint(0, 2, (n, self.max_new_tokens), generator=generator) + self.tokenizer.ids["a"]
        pos = torch.arange(self.max_new_tokens)[None]
        completions = torch.where(pos < length[:, None], letters, torch.full_like(letters, self.tokenizer.pad_id))
        completions[torch.arange(n), length] = self.tokenizer.eos_id
        return Rollout(prompts, completions, eos_mask(completions, self.tokenizer.eos_id))


TASKS = {"arithmetic": ArithmeticTask, "length": LengthTask}


def get_task(name: str = DEFAULT_TASK) -> Task:
    """A fresh task by name: ``"arithmetic"`` (the default) or ``"length"``."""
    if isinstance(name, Task):
        return name
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]()
