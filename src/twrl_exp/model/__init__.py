"""Function approximators: MLP and CNN (torch), tile-coded linear, table, none."""

from twrl_exp.model.cnn import CNN
from twrl_exp.model.linear import LinearModel, Table, TileCoding
from twrl_exp.model.mlp import MLP, NoModel

__all__ = ["CNN", "MLP", "LinearModel", "NoModel", "Table", "TileCoding"]
