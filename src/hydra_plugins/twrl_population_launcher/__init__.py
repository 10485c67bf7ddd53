"""twrl-exp's population launcher for Hydra: a multirun's jobs of one structure trained
together in one process."""
