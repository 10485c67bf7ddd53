"""twrl-exp's Optuna sweeper for Hydra: pruning, resumable studies, any launcher."""

import warnings

import optuna

# Heartbeats (stale-trial detection) are marked experimental in Optuna; we rely on them knowingly.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
