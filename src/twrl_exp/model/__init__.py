"""Function approximators: MLP (torch), tile-coded linear, table, none."""

from twrl_exp.model.linear import LinearModel, Table, TileCoding
from twrl_exp.model.mlp import MLP, NoModel

__all__ = ["MLP", "LinearModel", "NoModel", "Table", "TileCoding"]
