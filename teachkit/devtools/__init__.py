"""Maintainer tools: regenerate notebook outputs, rebuild data/."""
