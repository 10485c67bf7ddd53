"""Per env, a ranked table of agents built from the MLflow store.

    python -m twrl_exp.leaderboard                       # every env; writes ./leaderboard.html
    python -m twrl_exp.leaderboard --env CartPole-v1 --tag sweep_name=x --since 2025-01-01
    python -m twrl_exp.leaderboard --markdown - --no-html  # Markdown on stdout

Which runs: FINISHED runs only, never a sweep's parent run, and no Optuna-pruned trial unless
``--include-pruned``. An *agent* is everything a run's params say except its seed and run
bookkeeping (``monitor.*``, ``trial.*``, ``eval.*``, ``resume``, ``torch_threads``): runs that
differ only in seed form one row, runs that differ in any hyperparameter or budget do not.

Ranking, within each env (``RANKING_RULE``): rows in which at least one seed solved the env
come first, more of their seeds solved first, then fewer episodes to solve (mean over the solved
seeds; the old Gym leaderboard's criterion); then every row by a higher score, the IQM of
``best_mean_return`` over seeds (the mean when a row has fewer than 3 seeds). With 3 or more
seeds a 95% percentile-bootstrap interval of the IQM is shown (Agarwal et al. 2021).

The terminal table is always printed; ``--markdown PATH`` (``-``: stdout) writes Markdown and the
HTML page (default ``./leaderboard.html``; ``--no-html`` skips it) is one self-contained file
(inline CSS and SVG, no script, no network) with learning curves, links to each run in the MLflow
UI (``--ui-url``) and to its ``videos/`` artifacts. In a notebook::

    rows = build_rows(load_runs(envs=["CartPole-v1"]))
    attach_curves_and_videos(rows)
    Path("lb.html").write_text(render_html(rows))
"""

from __future__ import annotations

import argparse
import html
import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from rich.console import Console
from rich.table import Table

from twrl_exp.stats import aggregate_curves, bootstrap_ci, iqm

RANKING_RULE = (
    "Ranked per env: rows with solved seeds first (more seeds solved, then fewer episodes to "
    "solve), then by IQM of best 100-episode mean return over seeds (mean when < 3 seeds)."
)
DEFAULT_UI_URL = "http://127.0.0.1:5000"
DEFAULT_HTML = "leaderboard.html"
CURVE_METRIC = "episode/mean_return_100"
NOT_AGENT_PREFIXES = ("monitor.", "trial.", "eval.")
NOT_AGENT_KEYS = frozenset({"seed", "resume", "torch_threads"})
COMPOSITION_KEYS = frozenset({"update.name", "policy.name", "model.name", "env.id"})
Curve = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class RunRecord:
    """What the leaderboard needs of one MLflow run."""

    run_id: str
    run_name: str
    experiment_id: str
    env: str
    seed: str
    start_time: datetime
    artifact_uri: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]

    @property
    def composition(self) -> str:
        """``update/policy/model``."""
        parts = (self.tags.get(g) or self.params.get(f"{g}.name", "?") for g in _GROUPS)
        return "/".join(parts)

    @property
    def agent(self) -> dict[str, str]:
        """The params that define the agent: all but the seed and run bookkeeping."""
        return {
            k: v
            for k, v in self.params.items()
            if k not in NOT_AGENT_KEYS and not k.startswith(NOT_AGENT_PREFIXES)
        }

    def metric(self, key: str) -> float:
        return self.metrics.get(key, math.nan)


_GROUPS = ("update", "policy", "model")


@dataclass
class Row:
    """One agent on one env: its seeds' runs and their aggregates."""

    env: str
    composition: str
    agent: dict[str, str]
    runs: list[RunRecord]
    best_mean: float
    best_iqm: float | None
    best_ci: tuple[float, float] | None
    final_eval: float
    n_solved: int
    episodes_to_solve: float
    env_steps_to_solve: float
    time_to_solve_s: float
    train_time_s: float
    rank: int = 0
    differing: dict[str, str] = field(default_factory=dict)
    curve: Curve | None = None
    videos: list[tuple[str, str]] = field(default_factory=list)  # (label, file:// url)

    @property
    def n_seeds(self) -> int:
        return len(self.runs)

    @property
    def score(self) -> float:
        """IQM of best_mean_return with >= 3 seeds, else the mean."""
        return self.best_iqm if self.best_iqm is not None else self.best_mean

    @property
    def label(self) -> str:
        """The composition and the hyperparameters that tell this row apart from the others."""
        extras = ", ".join(f"{k}={v}" for k, v in self.differing.items())
        return f"{self.composition} {extras}".strip()


# --------------------------------------------------------------------------- loading


def load_runs(
    tracking_uri: str | None = None,
    *,
    envs: Iterable[str] = (),
    experiments: Iterable[str] = (),
    tags: dict[str, str] | None = None,
    since: date | None = None,
    until: date | None = None,
    include_pruned: bool = False,
) -> list[RunRecord]:
    """The FINISHED runs that match every filter (``until`` is inclusive; dates in local time)."""
    client = MlflowClient(tracking_uri=tracking_uri or _default_uri())
    wanted = set(experiments)
    names = {
        e.experiment_id: e.name
        for e in client.search_experiments()
        if not wanted or e.name in wanted
    }
    if not names:
        return []
    clauses = ["attributes.status = 'FINISHED'"]
    if since is not None:
        clauses.append(f"attributes.start_time >= {_ms(since)}")
    if until is not None:
        clauses.append(f"attributes.start_time < {_ms(until + timedelta(days=1))}")
    wanted_envs, wanted_tags = set(envs), tags or {}
    out: list[RunRecord] = []
    token: str | None = None
    while True:
        page = client.search_runs(
            list(names), " and ".join(clauses), max_results=1000, page_token=token
        )
        for run in page:
            t = run.data.tags
            if "sweep" in t or (t.get("stopped") == "pruned" and not include_pruned):
                continue
            if any(t.get(k) != v for k, v in wanted_tags.items()):
                continue
            params = dict(run.data.params)
            env = t.get("env") or params.get("env.id") or names[run.info.experiment_id]
            if wanted_envs and env not in wanted_envs:
                continue
            out.append(
                RunRecord(
                    run_id=run.info.run_id,
                    run_name=run.info.run_name or run.info.run_id,
                    experiment_id=run.info.experiment_id,
                    env=env,
                    seed=t.get("seed") or params.get("seed", "?"),
                    start_time=datetime.fromtimestamp((run.info.start_time or 0) / 1000),
                    artifact_uri=run.info.artifact_uri or "",
                    params=params,
                    metrics=dict(run.data.metrics),
                    tags=dict(t),
                )
            )
        token = page.token
        if not token:
            return out


def _default_uri() -> str:
    from twrl_exp.build import default_tracking_uri  # imports torch: only when needed

    return default_tracking_uri()


def _ms(day: date) -> int:
    return int(datetime.combine(day, time.min).astimezone().timestamp() * 1000)


def attach_curves_and_videos(
    rows: Sequence[Row], tracking_uri: str | None = None, points: int = 200
) -> None:
    """Fill each row's ``curve`` (mean/min/max over seeds of the trailing-100 mean return vs env
    steps, on ``points`` steps) and ``videos`` (its runs' ``videos/`` artifacts on local disk)."""
    client = MlflowClient(tracking_uri=tracking_uri or _default_uri())
    for row in rows:
        curves = []
        for run in row.runs:
            history = client.get_metric_history(run.run_id, CURVE_METRIC)
            curves.append(([m.step for m in history], [m.value for m in history]))
            for path in _artifact_files(client, run.run_id, "videos"):
                url = _file_url(run.artifact_uri, path)
                if url is not None:
                    row.videos.append((f"s{run.seed} {path.removeprefix('videos/')}", url))
        grid, mean, low, high = aggregate_curves(curves, points)
        row.curve = (grid, mean, low, high) if grid.size else None


def _artifact_files(client: MlflowClient, run_id: str, path: str, depth: int = 2) -> list[str]:
    files: list[str] = []
    for item in client.list_artifacts(run_id, path):
        if item.is_dir and depth > 0:
            files += _artifact_files(client, run_id, item.path, depth - 1)
        elif not item.is_dir:
            files.append(item.path)
    return files


def _file_url(artifact_uri: str, path: str) -> str | None:
    """A browser-openable URL of an artifact, or None when the artifacts are not on local disk."""
    if artifact_uri.startswith("file:"):
        return f"{artifact_uri.rstrip('/')}/{quote(path)}"
    if artifact_uri.startswith("/"):
        return (Path(artifact_uri) / path).as_uri()
    return None


# --------------------------------------------------------------------------- rows


def build_rows(runs: Iterable[RunRecord]) -> list[Row]:
    """Group runs into rows (one per env and agent), aggregate and rank them per env.

    Returns:
        The rows, grouped by env (sorted by name) and in rank order within each env.
    """
    groups: dict[tuple[str, tuple[tuple[str, str], ...]], list[RunRecord]] = defaultdict(list)
    for run in runs:
        groups[run.env, tuple(sorted(run.agent.items()))].append(run)
    by_env: dict[str, list[Row]] = defaultdict(list)
    for (env, agent), members in groups.items():
        members.sort(key=lambda r: (_seed_order(r.seed), r.run_id))
        by_env[env].append(_summarize(env, dict(agent), members))
    rows: list[Row] = []
    for env in sorted(by_env):
        ranked = sorted(by_env[env], key=_rank_key)
        _set_differing(ranked)
        for rank, row in enumerate(ranked, 1):
            row.rank = rank
        rows += ranked
    return rows


def _seed_order(seed: str) -> tuple[int, str]:
    return (int(seed), "") if seed.isdigit() else (1 << 62, seed)


def _summarize(env: str, agent: dict[str, str], runs: list[RunRecord]) -> Row:
    best = _finite(r.metric("best_mean_return") for r in runs)
    solved = [r for r in runs if math.isfinite(r.metric("episodes_to_solve"))]
    many = best.size >= 3
    return Row(
        env=env,
        composition=runs[0].composition,
        agent=agent,
        runs=runs,
        best_mean=_mean(best),
        best_iqm=iqm(best) if many else None,
        best_ci=bootstrap_ci(best, iqm, confidence=0.95, seed=0) if many else None,
        final_eval=_mean(_finite(r.metric("final_eval_mean_return") for r in runs)),
        n_solved=len(solved),
        episodes_to_solve=_mean(_finite(r.metric("episodes_to_solve") for r in solved)),
        env_steps_to_solve=_mean(_finite(r.metric("env_steps_to_solve") for r in solved)),
        time_to_solve_s=_mean(_finite(r.metric("time_to_solve_s") for r in solved)),
        train_time_s=_mean(_finite(r.metric("train_time_s") for r in runs)),
    )


def _finite(values: Iterable[float]) -> np.ndarray:
    x = np.fromiter(values, dtype=float)
    return x[np.isfinite(x)]


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else math.nan


def _rank_key(row: Row) -> tuple[float, ...]:
    score = -row.score if math.isfinite(row.score) else math.inf
    if row.n_solved:
        return (0, -row.n_solved / row.n_seeds, row.episodes_to_solve, score)
    return (1, 0, 0, score)


def _set_differing(rows: list[Row]) -> None:
    """Show a key when it varies among the rows that have it: across the whole env when every
    row has it (a budget, say), else among the rows of the same composition."""
    everywhere = set.intersection(*(set(r.agent) for r in rows))
    for row in rows:
        same = [r for r in rows if r.composition == row.composition]
        shown = {}
        for key, value in sorted(row.agent.items(), key=lambda kv: (_prefix_rank(kv[0]), kv[0])):
            peers = rows if key in everywhere else same
            if key not in COMPOSITION_KEYS and len({r.agent.get(key) for r in peers}) > 1:
                shown[_short(key)] = value
        row.differing = shown


def _prefix_rank(key: str) -> int:
    return 0 if key.split(".", 1)[0] in _GROUPS else 1


def _short(key: str) -> str:
    group, _, rest = key.partition(".")
    return rest if group in _GROUPS and rest else key


@lru_cache(maxsize=64)
def _reward_threshold(env_id: str, override: str) -> float | None:
    try:
        from twrl_exp.env import resolve_spec

        given = None if override in ("", "None") else float(override)
        return resolve_spec(env_id, given).reward_threshold
    except Exception:  # an env no longer registered must not break the leaderboard
        return None


def reward_threshold(row: Row) -> float | None:
    """The env's solve threshold as the row's runs used it (``env.reward_threshold`` or gym's)."""
    params = row.runs[0].params
    return _reward_threshold(params.get("env.id", row.env), params.get("env.reward_threshold", ""))


# --------------------------------------------------------------------------- text output


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


def render_terminal(rows: Sequence[Row], console: Console | None = None) -> None:
    """Print one rich table per env."""
    console = console or Console()
    for env, members in _by_env(rows).items():
        table = Table(title=_env_title(env, members), caption=RANKING_RULE, show_lines=False)
        for i, header in enumerate(HEADERS):
            table.add_column(header, justify="left" if i == 1 else "right", overflow="fold")
        for row in members:
            table.add_row(*_cells(row))
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


# --------------------------------------------------------------------------- HTML

_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0 2.5em}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:right;vertical-align:top}
th{background:#f4f4f4}td.agent,th.agent{text-align:left}
.sw{display:inline-block;width:.9em;height:.9em;margin-right:.3em;border-radius:2px}
svg text{font:11px system-ui,sans-serif;fill:#444}.rule{color:#555}
a{color:#0645ad}small{color:#666}
"""


def render_html(rows: Sequence[Row], *, ui_url: str = DEFAULT_UI_URL, subtitle: str = "") -> str:
    """A self-contained page: per env, learning curves (inline SVG) above the ranked table."""
    e = html.escape
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>twrl-exp leaderboard</title><style>{_CSS}</style></head><body>",
        "<h1>twrl-exp leaderboard</h1>",
        f"<p class='rule'>{e(RANKING_RULE)}<br><small>{e(subtitle)}</small></p>",
    ]
    for env, members in _by_env(rows).items():
        parts.append(f"<section><h2>{e(_env_title(env, members))}</h2>")
        parts.append(_svg(members, reward_threshold(members[0])))
        parts.append("<table><tr>")
        parts += [f"<th{_cls(i)}>{e(h)}</th>" for i, h in enumerate([*HEADERS, "runs", "videos"])]
        parts.append("</tr>")
        for row in members:
            cells = _cells(row)
            swatch = f"<span class='sw' style='background:{_color(row)}'></span>"
            parts.append(f"<tr><td>{swatch}{e(cells[0])}</td>")
            parts += [f"<td{_cls(i)}>{e(c)}</td>" for i, c in enumerate(cells[1:], 1)]
            runs = " ".join(
                f"<a href='{e(_run_url(ui_url, r))}' title='{e(r.run_name)}'>s{e(r.seed)}</a>"
                for r in row.runs
            )
            videos = "<br>".join(f"<a href='{e(u)}'>{e(label)}</a>" for label, u in row.videos)
            parts.append(f"<td class='agent'>{runs}</td><td class='agent'>{videos}</td></tr>")
        parts.append("</table></section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _cls(column: int) -> str:
    return " class='agent'" if column == 1 else ""


def _color(row: Row) -> str:
    return _PALETTE[(row.rank - 1) % len(_PALETTE)]


def _run_url(ui_url: str, run: RunRecord) -> str:
    return f"{ui_url.rstrip('/')}/#/experiments/{run.experiment_id}/runs/{run.run_id}"


def _svg(rows: Sequence[Row], threshold: float | None, w: int = 760, h: int = 340) -> str:
    """Mean trailing-100 return vs env steps, one line per row, its seeds' min-max shaded."""
    curves = [(row, row.curve) for row in rows if row.curve is not None]
    if not curves:
        return "<p><small>No learning curves recorded.</small></p>"
    left, right, top, bottom = 64, 16, 12, 44
    x_max = _round_out(0.0, max(float(c[0][-1]) for _, c in curves))[1]
    ys = [v for _, c in curves for v in (float(c[2].min()), float(c[3].max()))]
    ys += [threshold] if threshold is not None else []
    y_lo, y_hi = _round_out(min(ys), max(ys))

    def sx(x: float) -> float:
        return left + (w - left - right) * x / x_max

    def sy(y: float) -> float:
        return h - bottom - (h - top - bottom) * (y - y_lo) / (y_hi - y_lo)

    def points(xs: np.ndarray, vs: np.ndarray) -> str:
        return " ".join(
            f"{sx(float(x)):.1f},{sy(float(v)):.1f}" for x, v in zip(xs, vs, strict=True)
        )

    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' "
        f"viewBox='0 0 {w} {h}' role='img' aria-label='learning curves'>",
        f"<rect x='{left}' y='{top}' width='{w - left - right}' height='{h - top - bottom}' "
        "fill='none' stroke='#999'/>",
    ]
    for x in _ticks(0.0, x_max):
        out.append(
            f"<text x='{sx(x):.1f}' y='{h - bottom + 16}' text-anchor='middle'>{_si(x)}</text>"
        )
    for y in _ticks(y_lo, y_hi):
        out.append(
            f"<line x1='{left}' x2='{w - right}' y1='{sy(y):.1f}' y2='{sy(y):.1f}' stroke='#eee'/>"
        )
        out.append(f"<text x='{left - 6}' y='{sy(y) + 4:.1f}' text-anchor='end'>{_si(y)}</text>")
    out.append(
        f"<text x='{(left + w - right) / 2}' y='{h - 8}' text-anchor='middle'>env steps</text>"
    )
    out.append(
        f"<text transform='translate(14 {(top + h - bottom) / 2}) rotate(-90)' "
        "text-anchor='middle'>trailing-100 mean return</text>"
    )
    if threshold is not None:
        y = sy(threshold)
        out.append(
            f"<line x1='{left}' x2='{w - right}' y1='{y:.1f}' y2='{y:.1f}' stroke='#555' "
            f"stroke-dasharray='5 4'/><text x='{w - right - 4}' y='{y - 4:.1f}' "
            f"text-anchor='end'>solved ({threshold:g})</text>"
        )
    for row, (grid, mean, low, high) in curves:
        color, name = _color(row), html.escape(f"#{row.rank} {row.label}")
        band = points(grid, high) + " " + points(grid[::-1], low[::-1])
        out.append(f"<polygon points='{band}' fill='{color}' fill-opacity='0.15' stroke='none'/>")
        out.append(
            f"<polyline class='curve' points='{points(grid, mean)}' fill='none' "
            f"stroke='{color}' stroke-width='2'><title>{name}</title></polyline>"
        )
    # Bottom right: learning curves rise from bottom left to top right, leaving it empty.
    out += _legend([row for row, _ in curves], w - right - 8, h - bottom - 8)
    out.append("</svg>")
    return "\n".join(out)


def _legend(rows: list[Row], x_right: int, y_bottom: int) -> list[str]:
    names = [_clip(f"#{row.rank} {row.label}", 70) for row in rows]
    width = 30 + int(6.5 * max(len(n) for n in names))
    x, y = x_right - width, y_bottom - 8 - 15 * len(rows)
    out = [
        f"<rect x='{x}' y='{y}' width='{width}' height='{8 + 15 * len(rows)}' fill='white' "
        "fill-opacity='0.85' stroke='#ddd'/>"
    ]
    for i, (row, name) in enumerate(zip(rows, names, strict=True)):
        ly = y + 12 + 15 * i
        out.append(
            f"<line x1='{x + 6}' x2='{x + 22}' y1='{ly}' y2='{ly}' stroke='{_color(row)}' "
            f"stroke-width='3'/><text x='{x + 27}' y='{ly + 4}'>{html.escape(name)}</text>"
        )
    return out


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _step(lo: float, hi: float, n: int = 5) -> float:
    """A round tick spacing (1, 2 or 5 times a power of ten) giving at most ``n`` intervals."""
    raw = (hi - lo) / n if hi > lo else max(abs(hi), 1.0) / n
    base = 10.0 ** math.floor(math.log10(raw))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= raw)


def _round_out(lo: float, hi: float) -> tuple[float, float]:
    """The range widened to whole tick steps, so the axes start and end on a labelled tick."""
    step = _step(lo, hi)
    lo, hi = math.floor(lo / step) * step, math.ceil(hi / step) * step
    return (lo, hi + step) if hi == lo else (lo, hi)


def _ticks(lo: float, hi: float) -> list[float]:
    step = _step(lo, hi)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _si(x: float) -> str:
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:g}{suffix}"
    return f"{x:g}"


# --------------------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One sentence, no usage dump: the mistake is what the user needs to see.
        print(f"leaderboard: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date: use YYYY-MM-DD.") from None


def _tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"'{text}' is not a tag filter: use key=value.")
    return key, value


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m twrl_exp.leaderboard",
        description="Per env, a ranked table of agents from the MLflow store. " + RANKING_RULE,
    )
    p.add_argument(
        "--env", action="append", default=[], metavar="ENV_ID", help="this env only (repeatable)"
    )
    p.add_argument(
        "--experiment",
        action="append",
        default=[],
        metavar="NAME",
        help="this experiment only (repeatable)",
    )
    p.add_argument(
        "--tag",
        action="append",
        default=[],
        type=_tag,
        metavar="KEY=VALUE",
        help="runs with this tag (repeatable)",
    )
    p.add_argument(
        "--since", type=_date, metavar="YYYY-MM-DD", help="runs started on or after (local time)"
    )
    p.add_argument("--until", type=_date, metavar="YYYY-MM-DD", help="runs started on or before")
    p.add_argument("--include-pruned", action="store_true", help="rank pruned Optuna trials too")
    p.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="default: $MLFLOW_TRACKING_URI or ./mlflow.db of the project",
    )
    p.add_argument("--markdown", metavar="PATH", help="write Markdown there ('-': stdout)")
    p.add_argument("--html", metavar="PATH", default=DEFAULT_HTML, help="default: ./%(default)s")
    p.add_argument("--no-html", action="store_true", help="write no HTML page")
    p.add_argument("--ui-url", default=DEFAULT_UI_URL, metavar="URL", help="default: %(default)s")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (0, or 2 for bad input)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, or an error already explained on stderr
        return int(exc.code or 0)
    if args.since and args.until and args.since > args.until:
        print("leaderboard: error: --since is after --until.", file=sys.stderr)
        return 2
    uri = args.tracking_uri or _default_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        print(f"No runs to rank: there is no MLflow store at {uri}.")
        return 0
    try:
        runs = load_runs(
            uri,
            envs=args.env,
            experiments=args.experiment,
            tags=dict(args.tag),
            since=args.since,
            until=args.until,
            include_pruned=args.include_pruned,
        )
    except MlflowException as exc:
        reason = exc.message.strip().split(". ")[0].rstrip(".")
        print(f"leaderboard: error: cannot read {uri}: {reason}.", file=sys.stderr)
        return 2
    if not runs:
        print(f"No finished runs in {uri} match the filters, so there is nothing to rank.")
        return 0
    rows = build_rows(runs)
    render_terminal(rows)
    try:
        if args.markdown == "-":
            sys.stdout.write(render_markdown(rows))
        elif args.markdown:
            Path(args.markdown).write_text(render_markdown(rows), encoding="utf-8")
            print(f"Markdown: {Path(args.markdown).resolve()}")
        if not args.no_html:
            attach_curves_and_videos(rows, uri)
            page = Path(args.html).resolve()
            stamp = f"{uri} · {len(runs)} runs · {datetime.now():%Y-%m-%d %H:%M}"
            page.write_text(render_html(rows, ui_url=args.ui_url, subtitle=stamp), "utf-8")
            print(f"HTML: {page.as_uri()}")
    except OSError as exc:
        print(f"leaderboard: error: cannot write {exc.filename}: {exc.strerror}.", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
