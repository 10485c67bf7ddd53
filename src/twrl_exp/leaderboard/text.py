"""The leaderboard as text: rich tables on the terminal and Markdown, one table per env."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

from rich import box
from rich.console import Console
from rich.table import Table

from twrl_exp.leaderboard.ranking import reward_threshold
from twrl_exp.leaderboard.records import RANKING_RULE, Row


def _fmt(x: float | None, digits: int = 1) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:,.{digits}f}"


def _cells(row: Row) -> list[str]:
    solved = f"{_fmt(row.episodes_to_solve, 0)} ({row.n_solved}/{row.n_seeds})"
    ci = "" if row.best_ci is None else f" [{_fmt(row.best_ci[0])}, {_fmt(row.best_ci[1])}]"
    return [
        str(row.rank),
        row.label,
        str(row.n_seeds),
        solved,
        _fmt(row.best_mean),
        f"{_fmt(row.best_iqm)}{ci}" if row.best_iqm is not None else "— (< 3 seeds)",
        _fmt(row.final_eval),
        _fmt(row.env_steps_to_solve, 0),
        _fmt(row.time_to_solve_s, 2),
        _fmt(row.train_time_s, 2),
    ]


HEADERS = [
    "#",
    "agent",
    "seeds",
    "episodes to solve (solved)",
    "best-100 mean",
    "IQM [95% CI]",
    "final eval",
    "env steps to solve",
    "time to solve (s)",
    "train time (s)",
]


def _by_env(rows: Iterable[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        out[row.env].append(row)
    return out


def _env_title(env: str, rows: list[Row]) -> str:
    threshold = reward_threshold(rows[0])
    solved_at = f", solved at a 100-episode mean >= {threshold:g}" if threshold else ""
    return f"{env} ({len(rows)} agent{'s' * (len(rows) != 1)}{solved_at})"


# On a narrow terminal (< 140 columns): these columns, under short headers, numbers unbroken.
NARROW = {
    0: "#",
    1: "agent",
    2: "seeds",
    3: "solved in",
    4: "best-100",
    5: "IQM [95% CI]",
    6: "eval",
}
WIDE_ENOUGH = 140


def render_terminal(rows: Sequence[Row], console: Console | None = None) -> None:
    """Print one rich table per env; on a narrow terminal, the columns that matter most."""
    console = console or Console()
    narrow = console.width < WIDE_ENOUGH
    for env, members in _by_env(rows).items():
        table = Table(
            title=_env_title(env, members),
            caption=RANKING_RULE,
            show_lines=False,
            box=None if narrow else box.HEAVY_HEAD,
            pad_edge=not narrow,
        )
        columns = NARROW if narrow else dict(enumerate(HEADERS))
        for i, header in columns.items():
            agent = i == 1
            table.add_column(
                header,
                justify="left" if agent else "right",
                overflow="fold",
                no_wrap=not agent,  # a number is never split over lines
                ratio=1 if agent else None,
            )
        for row in members:
            cells = _cells(row)
            table.add_row(*(cells[i] for i in columns))
        console.print(table)


def render_markdown(rows: Sequence[Row]) -> str:
    """One Markdown table per env, under the ranking rule."""
    lines = ["# Leaderboard", "", RANKING_RULE]
    for env, members in _by_env(rows).items():
        lines += ["", f"## {_env_title(env, members)}", ""]
        lines.append("| " + " | ".join(HEADERS) + " |")
        lines.append("|" + "|".join("---" if i == 1 else "---:" for i in range(len(HEADERS))) + "|")
        for row in members:
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(row)) + " |")
    return "\n".join(lines) + "\n"
