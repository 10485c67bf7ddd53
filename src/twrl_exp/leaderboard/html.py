"""The leaderboard as one self-contained HTML page: per env, learning curves as inline SVG with
their legend under them, above the ranked table, with links to each run in the MLflow UI and to
its videos; and how to read the statistics."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np

from twrl_exp.leaderboard.external import EXTERNAL_RULE, external_rows, source
from twrl_exp.leaderboard.ranking import reward_threshold
from twrl_exp.leaderboard.records import (
    PARETO_RULE,
    RANKING_RULE,
    SEEDS_RULE,
    TIE_RULE,
    Row,
    RunRecord,
)
from twrl_exp.leaderboard.text import HEADERS, _by_env, _cells, _env_title
from twrl_exp.monitor.links import DEFAULT_UI_URL, run_url

# 20 colours before one repeats, then the same with dashes, then dotted: 60 distinct styles. The
# bands are told apart by colour only, hence so many colours.
_PALETTE = [
    *("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"),
    *("#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"),
    *("#000075", "#800000", "#469990", "#f032e6", "#556b2f"),
    *("#e6ab02", "#4b0082", "#fa8072", "#2f4f4f", "#32cd32"),
]
_DASHES = {"": "solid", "7 4": "dashed", "2 3": "dotted"}  # SVG dasharray: CSS border style
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0 2.5em}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:right;vertical-align:top}
th{background:#f4f4f4}td.agent,th.agent{text-align:left}
.sw{display:inline-block;width:1.6em;height:0;margin:0 .4em .25em 0;vertical-align:middle}
svg text{font:11px system-ui,sans-serif;fill:#444}.rule{color:#555}
ul.legend{list-style:none;padding:0;margin:.3em 0 0;max-width:60em}
ul.legend li{margin:.1em 0}
dl.notes{max-width:60em;color:#333}dl.notes dt{font-weight:600}dl.notes dd{margin:0 0 .5em 1.5em}
a{color:#0645ad}small{color:#666}code.cmd{display:block;max-width:28em;word-break:break-all}
table.external td,table.external th{color:#555;font-size:90%}
"""
_NOTES = {
    "seeds": "Distinct seeds. When one seed of an agent was run more than once (a rerun), only "
    "its latest started run counts in every figure; the column then reads e.g. '1 (2 runs)' and "
    "the earlier runs are listed under runs as not counted. Copies of one seed are not "
    "independent samples, so counting them would make the interval below look surer than it is.",
    "best-100 mean": "For each seed, the best mean return over 100 consecutive training "
    "episodes; the column is the mean of those values over the seeds.",
    "IQM": "The interquartile mean of the same per-seed values: sort them, drop the lowest and "
    "the highest quarter (rounded down) and average the rest (Agarwal et al. 2021). One lucky or "
    "failed seed moves it less than the mean, and it uses more of the seeds than the median. "
    "With fewer than 3 seeds nothing would be dropped, so only the mean is given.",
    "95% CI": "A percentile-bootstrap confidence interval of the IQM: the seeds are resampled "
    "with replacement 2,000 times, the IQM is taken of each resample, and the interval spans "
    "the middle 95% of those IQMs. It covers seed-to-seed variation only, and with a handful "
    "of seeds it is rough and tends to be too narrow.",
    "curves and band": "Each line is the mean over the agent's seeds of the mean return of the "
    "last 100 episodes, against env steps; the shaded band around it spans the lowest to the "
    "highest seed at each step (the range of the seeds, not a confidence interval). A seed that "
    "stopped early, once solved, keeps its last value to the end.",
}


def render_html(
    rows: Sequence[Row], *, ui_url: str = DEFAULT_UI_URL, subtitle: str = "", external: bool = True
) -> str:
    """A self-contained page: per env, learning curves (inline SVG) above the ranked table."""
    e = html.escape
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>twrl-exp leaderboard</title><style>{_CSS}</style></head><body>",
        "<h1>twrl-exp leaderboard</h1>",
        f"<p class='rule'>{e(RANKING_RULE)} {e(TIE_RULE)} {e(SEEDS_RULE)}"
        f"{' ' + e(PARETO_RULE) if any(row.pareto for row in rows) else ''}<br>"
        f"<small>{e(subtitle)}</small></p>",
        "<details open><summary>How to read the figures</summary><dl class='notes'>",
        *(f"<dt>{e(term)}</dt><dd>{e(text)}</dd>" for term, text in _NOTES.items()),
        "</dl></details>",
    ]
    for env, members in _by_env(rows).items():
        parts.append(f"<section><h2>{e(_env_title(env, members))}</h2>")
        parts.append(_svg(members, reward_threshold(members[0])))
        parts.append(_legend([row for row in members if row.curve is not None]))
        parts.append("<table><tr>")
        parts += [f"<th{_cls(i)}>{e(h)}</th>" for i, h in enumerate([*HEADERS, "runs", "videos"])]
        parts.append("</tr>")
        for row in members:
            cells = _cells(row)
            parts.append(f"<tr><td>{_swatch(row)}{e(cells[0])}</td>")
            parts += [f"<td{_cls(i)}>{e(c)}</td>" for i, c in enumerate(cells[1:], 1)]
            runs = " ".join(_run_link(ui_url, r) for r in row.runs)
            if row.repeats:
                earlier = " ".join(_run_link(ui_url, r) for r in row.repeats)
                runs += f"<br><small>not counted (an earlier run of a seed): {earlier}</small>"
            if row.compare_command:
                runs += (
                    "<details><summary><small>compare</small></summary>"
                    f"<code class='cmd'>{e(row.compare_command)}</code></details>"
                )
            videos = "<br>".join(f"<a href='{e(u)}'>{e(label)}</a>" for label, u in row.videos)
            parts.append(f"<td class='agent'>{runs}</td><td class='agent'>{videos}</td></tr>")
        parts.append("</table>")
        published = external_rows(env) if external else []
        if published:
            parts.append(
                "<table class='external'><tr><th class='agent'>external (published, not "
                "ranked)</th><th class='agent'>algo</th><th>env steps</th><th>mean return</th>"
                "<th>seeds</th></tr>"
            )
            parts += [
                f"<tr><td class='agent'><a href='{e(source().split(': ', 1)[-1])}'>"
                f"{e(r.source)}</a></td><td class='agent'>{e(r.algo)}</td><td>{e(r.env_steps)}"
                f"</td><td>{r.mean_return:,.1f} ± {r.std_return:,.1f}</td><td>{r.seeds}</td></tr>"
                for r in published
            ]
            parts.append("</table>")
        parts.append("</section>")
    if external:
        parts.append(f"<p class='rule'>{e(EXTERNAL_RULE)} Source: {e(source())}</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _cls(column: int) -> str:
    return " class='agent'" if column == 1 else ""


def _style(row: Row) -> tuple[str, str]:
    """The row's colour and SVG dash pattern, by rank: distinct for the first 60 ranks."""
    i = row.rank - 1
    dashes = list(_DASHES)
    return _PALETTE[i % len(_PALETTE)], dashes[i // len(_PALETTE) % len(dashes)]


def _swatch(row: Row) -> str:
    """A short line in the row's colour and dash pattern."""
    color, dash = _style(row)
    return f"<span class='sw' style='border-top:3px {_DASHES[dash]} {color}'></span>"


def _run_link(ui_url: str, run: RunRecord) -> str:
    url = html.escape(run_url(ui_url, run.experiment_id, run.run_id))
    return f"<a href='{url}' title='{html.escape(run.run_name)}'>s{html.escape(run.seed)}</a>"


def _legend(rows: list[Row]) -> str:
    """Under the chart, never over a curve, and whole: each label leads with what differs."""
    items = (f"<li>{_swatch(row)}#{row.rank} {html.escape(row.label)}</li>" for row in rows)
    return f"<ul class='legend'>{''.join(items)}</ul>" if rows else ""


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
        (color, dash), name = _style(row), html.escape(f"#{row.rank} {row.label}")
        band = points(grid, high) + " " + points(grid[::-1], low[::-1])
        out.append(f"<polygon points='{band}' fill='{color}' fill-opacity='0.15' stroke='none'/>")
        dashes = f" stroke-dasharray='{dash}'" if dash else ""
        out.append(
            f"<polyline class='curve' points='{points(grid, mean)}' fill='none' "
            f"stroke='{color}' stroke-width='2'{dashes}><title>{name}</title></polyline>"
        )
    out.append("</svg>")
    return "\n".join(out)


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
