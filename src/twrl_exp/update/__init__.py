"""Learning rules, each with the storage it learns from: REINFORCE (episodes), TD(lambda)
(online), A2C and PPO (rollouts), DQN, SAC and TD3 (replay), none.

Each ``update=<name>`` option builds an :class:`~twrl_exp.protocols.Update` with the function
of the same name in its module (``twrl_exp.update.ppo`` is ``actor_critic.ppo``, ...); the
package exports the learners.
"""

from twrl_exp.update.actor_critic import A2C, PPO
from twrl_exp.update.dqn import DQN
from twrl_exp.update.none import NoLearning, no_update
from twrl_exp.update.off_policy_ac import SAC, TD3
from twrl_exp.update.reinforce import Reinforce
from twrl_exp.update.td_lambda import TdLambda

__all__ = ["A2C", "DQN", "PPO", "SAC", "TD3", "NoLearning", "Reinforce", "TdLambda", "no_update"]
