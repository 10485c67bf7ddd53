"""Per env, a ranked table of agents built from the MLflow store.

    python -m twrl_exp.leaderboard                       # every env; writes ./leaderboard.html
    python -m twrl_exp.leaderboard --env CartPole-v1 --tag optuna.study=cartpole_reinforce
    python -m twrl_exp.leaderboard --since 2025-01-01 --until 2025-01-31 --markdown lb.md
    python -m twrl_exp.leaderboard --markdown - --no-html  # Markdown on stdout

Which runs: FINISHED runs only, never a sweep's parent run, and no Optuna-pruned trial unless
``--include-pruned``. An *agent* is everything a run's params say except its seed and run
bookkeeping (``monitor.*``, ``trial.*``, ``eval.*``, ``resume``, ``torch_threads``): runs that
differ only in seed form one row, runs that differ in any hyperparameter or budget do not.
Within a row, seeds are distinct (``SEEDS_RULE``): of several runs of one seed only the latest
started counts in every figure (a rerun supersedes), shown as ``1 (2 runs)``; the earlier ones
are kept in ``Row.repeats`` and linked on the page as not counted.

Ranking, within each env (``RANKING_RULE``): rows in which at least one seed solved the env
come first, more of their seeds solved first, then fewer episodes to solve (mean over the solved
seeds; the old Gym leaderboard's criterion); then every row by a higher score, the IQM of
``best_mean_return`` over seeds (the mean when a row has fewer than 3 seeds). With 3 or more
seeds a 95% percentile-bootstrap interval of the IQM is shown (Agarwal et al. 2021).

The terminal table is always printed, whole where it fits, else (80 columns, say) with each
agent's label on lines of its own above its figures, so that no number is split over lines.
``--markdown PATH`` (``-``: stdout) writes Markdown and the HTML page (default
``./leaderboard.html``; ``--no-html`` skips it) is one self-contained file (inline CSS and SVG, no
script, no network) with learning curves and their legend under them, what IQM, the bootstrap CI
and the band mean, links to each run in the MLflow UI (``--ui-url``) and to its ``videos/``
artifacts. Each agent's label leads with what tells it apart from the others on its env. In a
notebook::

    rows = build_rows(load_runs(envs=["CartPole-v1"]))
    attach_curves_and_videos(rows)
    Path("lb.html").write_text(render_html(rows))
"""

from __future__ import annotations

from twrl_exp.identity import NOT_AGENT_KEYS, NOT_AGENT_PREFIXES
from twrl_exp.leaderboard.cli import main
from twrl_exp.leaderboard.html import render_html
from twrl_exp.leaderboard.ranking import build_rows, reward_threshold
from twrl_exp.leaderboard.records import (
    COMPOSITION_KEYS,
    CURVE_METRIC,
    DEFAULT_HTML,
    RANKING_RULE,
    SEEDS_RULE,
    TIE_RULE,
    Curve,
    Row,
    RunRecord,
    attach_curves_and_videos,
    load_runs,
)
from twrl_exp.leaderboard.text import HEADERS, render_markdown, render_terminal
from twrl_exp.monitor.links import DEFAULT_UI_URL

__all__ = [
    "COMPOSITION_KEYS",
    "CURVE_METRIC",
    "DEFAULT_HTML",
    "DEFAULT_UI_URL",
    "HEADERS",
    "NOT_AGENT_KEYS",
    "NOT_AGENT_PREFIXES",
    "RANKING_RULE",
    "SEEDS_RULE",
    "TIE_RULE",
    "Curve",
    "Row",
    "RunRecord",
    "attach_curves_and_videos",
    "build_rows",
    "load_runs",
    "main",
    "render_html",
    "render_markdown",
    "render_terminal",
    "reward_threshold",
]
