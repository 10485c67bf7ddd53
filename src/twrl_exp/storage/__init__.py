"""What is kept between steps, and when learning is due: one online step, whole episodes, a
fixed-length rollout, or a replay buffer (uniform or prioritised); each hands its learner
batches of one record type."""

from twrl_exp.storage.episodes import EpisodeBatch, EpisodeStorage
from twrl_exp.storage.online import NoStorage, OnlineStorage
from twrl_exp.storage.prioritized import PrioritizedReplayStorage
from twrl_exp.storage.replay import ReplayBatch, ReplaySettings, ReplayStorage
from twrl_exp.storage.rollout import RolloutBatch, RolloutStorage

__all__ = [
    "EpisodeBatch",
    "EpisodeStorage",
    "NoStorage",
    "OnlineStorage",
    "PrioritizedReplayStorage",
    "ReplayBatch",
    "ReplaySettings",
    "ReplayStorage",
    "RolloutBatch",
    "RolloutStorage",
]
