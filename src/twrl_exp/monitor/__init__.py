"""What observes a run: console progress, MLflow tracking, checkpoints. Only here is mlflow used."""

from twrl_exp.monitor.checkpoint import CheckpointMonitor
from twrl_exp.monitor.console import ConsoleMonitor

__all__ = ["CheckpointMonitor", "ConsoleMonitor"]
