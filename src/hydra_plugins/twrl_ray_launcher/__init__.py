"""twrl-exp's Ray launcher for Hydra: sweeps on a local or remote Ray cluster."""
