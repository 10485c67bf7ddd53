"""Entry point: `python train.py env=cartpole policy=categorical update=reinforce`."""

from twrl_exp.train import main

if __name__ == "__main__":
    main()
