"""Widgets of notebooks 02, 04 and 05/06: the clipped objective, group size, DPO against DPOP."""

from __future__ import annotations

import ipywidgets as W
import numpy as np

from ..rlhf import landscapes
from ..viz import tradeoffs as vz
from ._panel import Panel, figure_panel

__all__ = ["clipped_objective_widget", "group_size_widget", "dpo_vs_dpop_widget"]

RATIO_GRID = np.linspace(0.3, 2.0, 341)
GROUP_SIZES = (2, 3, 4, 6, 8, 12, 16, 24, 32)


def clipped_objective_widget() -> Panel:
    """PPO's per-token objective against ρ: move the advantage (its sign too) and ε."""
    controls = {
        "advantage": W.FloatSlider(value=1.0, min=-2.0, max=2.0, step=0.25, description="advantage A"),
        "clip_eps": W.FloatSlider(value=0.2, min=0.05, max=0.5, step=0.05, description="clip ε"),
    }

    def compute(v):
        return landscapes.clipped_objective(RATIO_GRID, v["advantage"], v["clip_eps"])

    def draw(curves, v):
        return vz.clipped_objective_figure(curves, v["advantage"], v["clip_eps"])

    return figure_panel(controls, compute, draw)


def group_size_widget(n_groups: int = 4000, seed: int = 0) -> Panel:
    """GRPO's advantage noise and the groups without signal, against group size, for a success rate p."""
    controls = {
        "success_p": W.FloatSlider(value=0.3, min=0.05, max=0.95, step=0.05, description="success p"),
        "group_size": W.SelectionSlider(options=list(GROUP_SIZES), value=8, description="group G"),
    }

    def compute(v):
        noise = landscapes.group_advantage_noise(v["success_p"], GROUP_SIZES, n_groups, seed)
        k = GROUP_SIZES.index(v["group_size"])
        return {**noise, "chosen": {key: noise[key][k] for key in noise}}

    def draw(noise, v):
        return vz.group_noise_figure(noise, v["success_p"], v["group_size"])

    return figure_panel(controls, compute, draw)


def dpo_vs_dpop_widget(span: float = 6.0) -> Panel:
    """One pair at a fixed margin while its chosen log-ratio moves: DPO against DPOP as β and λ move."""
    if not span > 0:
        raise ValueError(f"span must be positive, got {span!r}")
    grid = np.linspace(-span, span, 241)
    controls = {
        "beta": W.FloatLogSlider(value=0.1, base=10, min=-2, max=0, step=0.25, description="β"),
        "lam": W.FloatSlider(value=50.0, min=0.0, max=100.0, step=10.0, description="λ (DPOP)"),
        "margin": W.FloatSlider(value=2.0, min=-4.0, max=8.0, step=1.0, description="margin h"),
    }

    def compute(v):
        return landscapes.pair_losses(grid, v["margin"], v["beta"], v["lam"])

    def draw(curves, v):
        return vz.pair_losses_figure(curves, v["margin"], v["beta"], v["lam"])

    return figure_panel(controls, compute, draw)
