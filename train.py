"""Entry point: `python train.py env=cartpole policy=categorical update=reinforce`."""

from twrl_exp.monitor.writer import prestart

prestart()  # MLflow's writer process starts importing now, while this one imports torch

from twrl_exp.train import main  # noqa: E402

if __name__ == "__main__":
    main()
