"""What observes a run: console progress, MLflow tracking, checkpoints, videos. Only here (and in
the store and the command lines) is mlflow used. Nothing is imported here, so that light users
(the leaderboard's links) do not pay for torch."""
