"""The leaderboard as text: rich tables on the terminal and Markdown, one table per env."""

from __future__ import annotations

import math
import re
import textwrap
from collections import defaultdict
from collections.abc import Iterable, Sequence

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from twrl_exp.leaderboard.external import EXTERNAL_RULE, external_rows, source
from twrl_exp.leaderboard.ranking import reward_threshold
from twrl_exp.leaderboard.records import PARETO_RULE, RANKING_RULE, SEEDS_RULE, TIE_RULE, Row


def _fmt(x: float | None, digits: int = 1) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:,.{digits}f}"


def _cells(row: Row) -> list[str]:
    solved = f"{_fmt(row.episodes_to_solve, 0)} ({row.n_solved}/{row.n_seeds})"
    ci = "" if row.best_ci is None else f" [{_fmt(row.best_ci[0])}, {_fmt(row.best_ci[1])}]"
    return [
        row.rank_text,
        row.label,
        row.seeds_text,
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


# Where the full table does not fit: these columns, each agent's label on lines of its own.
STACKED = {2: "seeds", 3: "solved in", 4: "best-100", 5: "IQM [95% CI]", 6: "eval"}
_INDENT = 4  # the rank, right-aligned in 2 columns, and 2 spaces
_NOTE = re.compile(r" (?=[(\[])")  # before "(3/3)", "[lo, hi]", "(2 runs)", "(< 3 seeds)"


def render_terminal(
    rows: Sequence[Row], console: Console | None = None, *, external: bool = True
) -> None:
    """Print one table per env and, under them, the ranking and seeds rules.

    The full table is printed where it fits the terminal with the agent column as wide as the
    longest word of a label; elsewhere (80 columns, say) each agent's label takes lines of its
    own above its figures. Either way no number and no ``key=value`` is split over two lines.
    """
    console = console or Console()
    for env, members in _by_env(rows).items():
        longest = max(len(word) for row in members for word in [*row.label.split(), "agent"])
        needed = Measurement.get(
            console, console.options.update_width(10_000), _table(env, members, longest)
        ).maximum
        if needed <= console.width:
            console.print(_table(env, members, None))
        else:
            _print_stacked(console, env, members)
        published = external_rows(env) if external else []
        if published:
            console.print(
                Text("external (published, not ranked): " + "; ".join(r.text for r in published))
            )
    rules = f"{RANKING_RULE} {TIE_RULE} {SEEDS_RULE}" + (f" {EXTERNAL_RULE}" if external else "")
    rules += f" {PARETO_RULE}" if any(row.pareto for row in rows) else ""
    console.print(Text(rules, style="dim"))


def _table(env: str, members: list[Row], agent_width: int | None) -> Table:
    """Every column; ``agent_width`` fixes the agent column's width (to measure the table)."""
    table = Table(title=Text(_env_title(env, members), style="table.title"), box=box.HEAVY_HEAD)
    cells = [_cells(row) for row in members]
    for i, header in enumerate(HEADERS):
        agent = i == 1
        widest = max(10, *(len(row[i]) for row in cells))  # a header about as wide as its figures
        table.add_column(
            header if agent else "\n".join(textwrap.wrap(header, widest, break_long_words=False)),
            justify="left" if agent else "right",
            no_wrap=not agent,  # the agent's label wraps between words only: it has the room
            width=agent_width if agent else None,
        )
    for row in cells:
        table.add_row(*(Text(cell) for cell in row))
    return table


def _print_stacked(console: Console, env: str, members: list[Row]) -> None:
    width = max(console.width - _INDENT, 20)
    figures = [[_cells(row)[i] for i in STACKED] for row in members]
    header, lines = _grid(list(STACKED.values()), figures, width)
    out = [(_env_title(env, members), "bold"), (" #  agent", "bold")]
    out.append((" " * _INDENT + header, "bold"))
    for row, row_lines in zip(members, lines, strict=True):
        label = textwrap.wrap(row.label, width, break_long_words=False, break_on_hyphens=False)
        out += [(f"{row.rank_text:>2}  {label[0]}", "")]
        out += [(" " * _INDENT + line, "") for line in label[1:] + row_lines]
    for line, style in out:
        console.print(Text(line, style=style), soft_wrap=True)  # laid out here: no re-wrapping


def _grid(headers: list[str], rows: list[list[str]], width: int) -> tuple[str, list[list[str]]]:
    """Right-aligned columns 2 spaces apart: the header line and each row's lines. Each cell's
    note (``(3/3)``, ``[lo, hi]``) goes on a line below it if one line is wider than ``width``."""
    for split in (False, True):
        cells = [[_NOTE.split(c, maxsplit=1) if split else [c] for c in row] for row in rows]
        widths = [
            max([len(h), *(len(part) for row in cells for part in row[j])])
            for j, h in enumerate(headers)
        ]
        if sum(widths) + 2 * (len(widths) - 1) <= width:
            break

    def line(parts: list[str]) -> str:
        return "  ".join(p.rjust(w) for p, w in zip(parts, widths, strict=True)).rstrip()

    return line(headers), [
        [line([c[k] if k < len(c) else "" for c in row]) for k in range(max(map(len, row)))]
        for row in cells
    ]


def render_markdown(rows: Sequence[Row], *, external: bool = True) -> str:
    """One Markdown table per env, under the ranking rule; the env's published rows under it."""
    lines = ["# Leaderboard", "", RANKING_RULE, "", TIE_RULE, "", SEEDS_RULE]
    if any(row.pareto for row in rows):
        lines += ["", PARETO_RULE]
    if external:
        lines += ["", f"{EXTERNAL_RULE} Source: {source()}"]
    for env, members in _by_env(rows).items():
        lines += ["", f"## {_env_title(env, members)}", ""]
        lines.append("| " + " | ".join(HEADERS) + " |")
        lines.append("|" + "|".join("---" if i == 1 else "---:" for i in range(len(HEADERS))) + "|")
        for row in members:
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(row)) + " |")
        published = external_rows(env) if external else []
        if published:
            lines += [
                "",
                "| external | algo | env steps | mean return | seeds |",
                "|---|---|---:|---:|---:|",
            ]
            lines += [
                f"| {r.source} | {r.algo} | {r.env_steps} | "
                f"{r.mean_return:,.1f} ± {r.std_return:,.1f} | {r.seeds} |"
                for r in published
            ]
    return "\n".join(lines) + "\n"
