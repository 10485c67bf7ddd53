"""Action selection from model outputs: categorical, normal, tanh-normal, deterministic,
epsilon-greedy, greedy, random."""

from twrl_exp.policy.continuous import Deterministic, TanhNormal
from twrl_exp.policy.gradient import Categorical, Normal
from twrl_exp.policy.value import EGreedy, Greedy, RandomPolicy

__all__ = [
    "Categorical",
    "Deterministic",
    "EGreedy",
    "Greedy",
    "Normal",
    "RandomPolicy",
    "TanhNormal",
]
