"""The leaderboard as one self-contained HTML page: per env, learning curves as inline SVG
above the ranked table, with links to each run in the MLflow UI and to its videos."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np

from twrl_exp.leaderboard.ranking import reward_threshold
from twrl_exp.leaderboard.records import RANKING_RULE, Row, RunRecord
from twrl_exp.leaderboard.text import HEADERS, _by_env, _cells, _env_title
from twrl_exp.monitor.links import DEFAULT_UI_URL, run_url

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
    return run_url(ui_url, run.experiment_id, run.run_id)


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
