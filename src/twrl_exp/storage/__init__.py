"""What is kept between steps, and when learning is due: one online step, whole episodes, a
fixed-length rollout, or a replay buffer."""

from twrl_exp.storage.episodes import EpisodeStorage
from twrl_exp.storage.online import OnlineStorage
from twrl_exp.storage.replay import ReplayStorage
from twrl_exp.storage.rollout import RolloutStorage

__all__ = ["EpisodeStorage", "OnlineStorage", "ReplayStorage", "RolloutStorage"]
