"""Learning rules: REINFORCE, TD(lambda) (Sarsa / Q-learning / Expected Sarsa), none."""

from twrl_exp.update.none import NoUpdate
from twrl_exp.update.reinforce import Reinforce
from twrl_exp.update.td_lambda import TdLambda

__all__ = ["NoUpdate", "Reinforce", "TdLambda"]
