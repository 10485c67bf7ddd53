"""``python -m twrl_exp.leaderboard``: the command line (see the package docstring)."""

from __future__ import annotations

from twrl_exp.leaderboard.cli import main

raise SystemExit(main())
