"""The toy world: a tiny GPT, toy tasks with gold rewards, generation, SFT and a reward model."""
