"""Action selection from model outputs: categorical, normal, epsilon-greedy, greedy, random."""

from twrl_exp.policy.gradient import Categorical, Normal
from twrl_exp.policy.value import EGreedy, Greedy, RandomPolicy

__all__ = ["Categorical", "EGreedy", "Greedy", "Normal", "RandomPolicy"]
