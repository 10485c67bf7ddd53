"""A comparison told three ways: a terminal table (readable at 80 columns), one self-contained
HTML page (inline SVG: intervals, performance profiles, aggregate learning curves) and, with
both as artifacts, an MLflow run."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np
from rich.console import Console
from rich.table import Table

from twrl_exp.compare.analysis import Comparison, Pair
from twrl_exp.leaderboard.html import _PALETTE, _round_out, _si, _ticks

Curve = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

NOTES = {
    "score": "One number per seed: the run's {metric}.{normalised}",
    "IQM and mean": "The interquartile mean (the mean of the middle half of the seeds' scores; "
    "one lucky or failed seed moves it little) and the mean of all seeds' scores, with "
    "{confidence:.0%} stratified-bootstrap percentile intervals: every env's seeds are resampled "
    "with replacement (Agarwal et al. 2021; rliable's definitions).",
    "P(A > B)": "The probability of improvement: the chance that a seed of A scores above a seed "
    "of B (ties count half), averaged over envs, with its bootstrap interval (A and B resampled "
    "independently). 0.5 means no tendency either way.",
    "decision": "Per env, Welch's t-test of equal mean scores at level {level:.4g} "
    "(alpha {alpha:g}{looks}); a side is better where the test rejects (Colas, Sigaud and "
    "Oudeyer 2018, 'How Many Random Seeds?').",
    "seeds for power": "The seeds a side needs for Welch's test at that level to detect the "
    "difference with {power:.0%} power, from the sides' standard deviations and {effect}. "
    "It is an estimate: more seeds refine it.",
}


def _notes(result: Comparison) -> dict[str, str]:
    looks = result.alpha / result.level
    effect = (
        f"a difference of {result.effect:g}"
        if result.effect is not None
        else "the observed difference of means"
    )
    normalised = (
        " With several envs, each env's scores are first normalised to (score - random) / "
        "(reference - random) from the shipped table of random and reference returns "
        "(twrl_exp/compare/references.json, with its sources)."
    )
    values = {
        "metric": result.metric,
        "normalised": normalised if result.normalised else "",
        "confidence": result.confidence,
        "level": result.level,
        "alpha": result.alpha,
        "looks": f" over {looks:.0f} looks, as --until-decided may take" if looks > 1 else "",
        "power": result.power,
        "effect": effect,
    }
    return {k: v.format(**values) for k, v in NOTES.items()}


def _num(x: float, digits: int = 1) -> str:
    return "-" if not math.isfinite(x) else f"{x:,.{digits}f}"


def _interval(low: float, high: float, digits: int = 1) -> str:
    return f"[{_num(low, digits)}, {_num(high, digits)}]"


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "-"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _needed(pair: Pair) -> str:
    parts = []
    for verdict in pair.envs:
        if verdict.needed is None:
            parts.append("no difference")
        elif not any(verdict.more.values()):
            parts.append(f"{verdict.needed} a side: have them")
        else:
            more = ", ".join(f"{k} +{v}" for k, v in verdict.more.items() if v)
            parts.append(f"{verdict.needed} a side ({more})")
    return "; ".join(parts)


def render_terminal(result: Comparison, console: Console | None = None) -> None:
    console = console or Console()
    digits = 3 if result.normalised else 1
    console.print(
        f"score per seed: {result.metric}" + (" (normalised)" if result.normalised else "")
    )
    agents = Table(show_edge=False, pad_edge=False)
    agents.add_column("agent")
    agents.add_column("seeds", justify="right")
    agents.add_column(f"IQM {result.confidence:.0%} CI", justify="right")
    agents.add_column(f"mean {result.confidence:.0%} CI", justify="right")
    for side in result.sides:
        agents.add_row(
            side.letter,
            "/".join(str(n) for n in side.seeds.values()),
            f"{_num(side.iqm, digits)} {_interval(*side.iqm_ci, digits)}",
            f"{_num(side.mean, digits)} {_interval(*side.mean_ci, digits)}",
        )
    console.print(agents)
    console.print()
    pairs = Table(show_edge=False, pad_edge=False)
    pairs.add_column("pair")
    pairs.add_column("P(A > B) CI", justify="right")
    pairs.add_column("Welch p", justify="right")
    pairs.add_column("verdict")
    pairs.add_column(f"seeds for {result.power:.0%} power")
    for pair in result.pairs:
        pairs.add_row(
            f"{pair.a} vs {pair.b}",
            f"{pair.improvement:.2f} {_interval(*pair.improvement_ci, 2)}",
            ", ".join(_p(v.p_value) for v in pair.envs) or "-",
            pair.verdict,
            _needed(pair),
        )
    console.print(pairs)
    console.print(
        f"decision: Welch's t-test per env at level {result.level:.4g}; P(A > B): the chance a "
        "seed of the first scores above one of the second.",
        style="dim",
    )


# ------------------------------------------------------------------------------------- HTML

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:70em}
table{border-collapse:collapse;margin:1em 0 2em}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:right;vertical-align:top}
th{background:#f4f4f4}td.l,th.l{text-align:left}
svg text{font:11px system-ui,sans-serif;fill:#444}
dl.notes dt{font-weight:600}dl.notes dd{margin:0 0 .5em 1.5em}
.sw{display:inline-block;width:1.6em;height:.7em;margin-right:.4em;vertical-align:middle}
"""


def _color(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _intervals_svg(
    labels: Sequence[str], points: Sequence[float], lows: Sequence[float], highs: Sequence[float],
    *, reference: float | None = None, w: int = 640,
) -> str:  # fmt: skip
    """Horizontal point-and-interval plot, one row per label."""
    row, left, right, top = 28, 90, 20, 10
    h = top + row * len(labels) + 30
    values = [v for v in (*points, *lows, *highs) if math.isfinite(v)]
    values += [reference] if reference is not None else []
    lo, hi = _round_out(min(values), max(values)) if values else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 1.0, hi + 1.0

    def sx(x: float) -> float:
        return left + (w - left - right) * (x - lo) / (hi - lo)

    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' "
        f"viewBox='0 0 {w} {h}' role='img' class='plot'>"
    ]
    for x in _ticks(lo, hi):
        out.append(
            f"<line x1='{sx(x):.1f}' x2='{sx(x):.1f}' y1='{top}' y2='{h - 30}' stroke='#eee'/>"
            f"<text x='{sx(x):.1f}' y='{h - 14}' text-anchor='middle'>{_si(x)}</text>"
        )
    if reference is not None:
        out.append(
            f"<line x1='{sx(reference):.1f}' x2='{sx(reference):.1f}' y1='{top}' y2='{h - 30}' "
            "stroke='#555' stroke-dasharray='4 3'/>"
        )
    for i, (label, p, a, b) in enumerate(zip(labels, points, lows, highs, strict=True)):
        y = top + row * i + row / 2
        color = _color(i)
        out.append(
            f"<text x='{left - 8}' y='{y + 4:.1f}' text-anchor='end'>{html.escape(label)}</text>"
        )
        if math.isfinite(a) and math.isfinite(b):
            out.append(
                f"<line x1='{sx(a):.1f}' x2='{sx(b):.1f}' y1='{y:.1f}' y2='{y:.1f}' "
                f"stroke='{color}' stroke-width='6' stroke-opacity='0.35'/>"
            )
        if math.isfinite(p):
            out.append(f"<circle cx='{sx(p):.1f}' cy='{y:.1f}' r='4' fill='{color}'/>")
    out.append("</svg>")
    return "".join(out)


def _lines_svg(
    series: Sequence[tuple[str, Curve]], *, xlabel: str, ylabel: str, w: int = 640, h: int = 300
) -> str:
    """Lines with shaded bands: ``(label, (x, y, low, high))`` each."""
    usable = [(label, c) for label, c in series if c[0].size]
    if not usable:
        return "<p><small>No curve recorded.</small></p>"
    left, right, top, bottom = 64, 16, 12, 44
    x_lo = min(float(c[0][0]) for _, c in usable)
    x_hi = max(float(c[0][-1]) for _, c in usable)
    x_lo, x_hi = (x_lo, x_hi) if x_hi > x_lo else (x_lo - 1.0, x_hi + 1.0)
    ys = [float(v) for _, c in usable for v in (np.nanmin(c[2]), np.nanmax(c[3]))]
    y_lo, y_hi = _round_out(min(ys), max(ys))
    y_lo, y_hi = (y_lo, y_hi) if y_hi > y_lo else (y_lo - 1.0, y_hi + 1.0)

    def sx(x: float) -> float:
        return left + (w - left - right) * (x - x_lo) / (x_hi - x_lo)

    def sy(y: float) -> float:
        return h - bottom - (h - top - bottom) * (y - y_lo) / (y_hi - y_lo)

    def points(xs: np.ndarray, vs: np.ndarray) -> str:
        return " ".join(
            f"{sx(float(x)):.1f},{sy(float(v)):.1f}" for x, v in zip(xs, vs, strict=True)
        )

    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' "
        f"viewBox='0 0 {w} {h}' role='img' class='plot'>",
        f"<rect x='{left}' y='{top}' width='{w - left - right}' height='{h - top - bottom}' "
        "fill='none' stroke='#999'/>",
    ]
    for x in _ticks(x_lo, x_hi):
        if x_lo <= x <= x_hi:
            out.append(
                f"<text x='{sx(x):.1f}' y='{h - bottom + 16}' text-anchor='middle'>{_si(x)}</text>"
            )
    for y in _ticks(y_lo, y_hi):
        out.append(
            f"<line x1='{left}' x2='{w - right}' y1='{sy(y):.1f}' y2='{sy(y):.1f}' stroke='#eee'/>"
            f"<text x='{left - 6}' y='{sy(y) + 4:.1f}' text-anchor='end'>{_si(y)}</text>"
        )
    out.append(
        f"<text x='{(left + w - right) / 2}' y='{h - 8}' text-anchor='middle'>{xlabel}</text>"
    )
    out.append(
        f"<text transform='translate(14 {(top + h - bottom) / 2}) rotate(-90)' "
        f"text-anchor='middle'>{ylabel}</text>"
    )
    for i, (label, (xs, middle, low, high)) in enumerate(usable):
        color = _color(i)
        band = points(xs, high) + " " + points(xs[::-1], low[::-1])
        out.append(f"<polygon points='{band}' fill='{color}' fill-opacity='0.15' stroke='none'/>")
        out.append(
            f"<polyline class='curve' points='{points(xs, middle)}' fill='none' stroke='{color}' "
            f"stroke-width='2'><title>{html.escape(label)}</title></polyline>"
        )
    out.append("</svg>")
    legend = " ".join(
        f"<span><span class='sw' style='background:{_color(i)}'></span>{html.escape(label)}</span>"
        for i, (label, _) in enumerate(usable)
    )
    return "".join(out) + f"<p>{legend}</p>"


def render_html(
    result: Comparison,
    *,
    profiles: Sequence[tuple[str, Curve]],
    curves: dict[str, list[tuple[str, Curve]]],
) -> str:
    """The page: the agents, their intervals, the pairs, performance profiles and aggregate
    learning curves per env, and how to read each figure."""
    notes = _notes(result)
    digits = 3 if result.normalised else 1
    esc = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>twrl-compare: {esc(' vs '.join(s.letter for s in result.sides))}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Is A better than B?</h1>",
        f"<p>{esc(notes['score'])}</p>",
        "<table><tr><th class='l'>agent</th><th class='l'>what</th><th>seeds</th>"
        f"<th>IQM</th><th>{result.confidence:.0%} CI</th><th>mean</th>"
        f"<th>{result.confidence:.0%} CI</th></tr>",
    ]
    for i, side in enumerate(result.sides):
        seeds = ", ".join(f"{env}: {n}" for env, n in side.seeds.items())
        parts.append(
            f"<tr><td class='l'><span class='sw' style='background:{_color(i)}'></span>"
            f"{side.letter}</td><td class='l'><code>{esc(side.spec)}</code></td>"
            f"<td>{esc(seeds)}</td><td>{_num(side.iqm, digits)}</td>"
            f"<td>{_interval(*side.iqm_ci, digits)}</td><td>{_num(side.mean, digits)}</td>"
            f"<td>{_interval(*side.mean_ci, digits)}</td></tr>"
        )
    parts.append("</table><h2>IQM with its interval</h2>")
    parts.append(
        _intervals_svg(
            [s.letter for s in result.sides],
            [s.iqm for s in result.sides],
            [s.iqm_ci[0] for s in result.sides],
            [s.iqm_ci[1] for s in result.sides],
        )
    )
    parts.append(
        "<h2>Pairs</h2><table><tr><th class='l'>pair</th><th>P(A &gt; B)</th>"
        f"<th>{result.confidence:.0%} CI</th><th>Welch p</th><th class='l'>verdict</th>"
        f"<th class='l'>seeds for {result.power:.0%} power</th></tr>"
    )
    for pair in result.pairs:
        parts.append(
            f"<tr><td class='l'>{pair.a} vs {pair.b}</td><td>{pair.improvement:.2f}</td>"
            f"<td>{_interval(*pair.improvement_ci, 2)}</td>"
            f"<td>{esc(', '.join(_p(v.p_value) for v in pair.envs) or '-')}</td>"
            f"<td class='l'>{esc(pair.verdict)}</td><td class='l'>{esc(_needed(pair))}</td></tr>"
        )
    parts.append("</table>")
    parts.append(
        _intervals_svg(
            [f"{p.a} > {p.b}" for p in result.pairs],
            [p.improvement for p in result.pairs],
            [p.improvement_ci[0] for p in result.pairs],
            [p.improvement_ci[1] for p in result.pairs],
            reference=0.5,
        )
    )
    parts.append("<h2>Performance profiles</h2>")
    parts.append(_lines_svg(profiles, xlabel="score threshold", ylabel="fraction of seeds above"))
    for env, env_curves in curves.items():
        parts.append(f"<h2>Aggregate learning curves: {esc(env)}</h2>")
        parts.append(
            _lines_svg(env_curves, xlabel="env steps", ylabel="IQM of trailing-100 mean return")
        )
    parts.append("<h2>How to read it</h2><dl class='notes'>")
    for term, text in notes.items():
        parts.append(f"<dt>{esc(term)}</dt><dd>{esc(text)}</dd>")
    parts.append(
        "<dt>curves</dt><dd>The IQM over seeds of each run's trailing-100-episode mean "
        f"return at each env step, with its {result.confidence:.0%} bootstrap band (seeds "
        "resampled); a run that stopped early keeps its last value.</dd>"
    )
    parts.append("</dl></body></html>")
    return "\n".join(parts)
