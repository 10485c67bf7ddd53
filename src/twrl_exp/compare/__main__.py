"""``python -m twrl_exp.compare``: see :mod:`twrl_exp.compare.cli`."""

from twrl_exp.compare.cli import cli

cli()
