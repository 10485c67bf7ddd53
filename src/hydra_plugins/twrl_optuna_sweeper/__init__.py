"""twrl-exp's Optuna sweeper for Hydra: pruning, resumable studies, any launcher."""
