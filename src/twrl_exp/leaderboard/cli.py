"""The command line: ``python -m twrl_exp.leaderboard [filters] [outputs]``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

from mlflow.exceptions import MlflowException

from twrl_exp.leaderboard.html import render_html
from twrl_exp.leaderboard.ranking import build_rows
from twrl_exp.leaderboard.records import (
    DEFAULT_HTML,
    RANKING_RULE,
    SEEDS_RULE,
    _default_uri,
    attach_curves_and_videos,
    load_runs,
)
from twrl_exp.leaderboard.text import render_markdown, render_terminal
from twrl_exp.monitor.links import DEFAULT_UI_URL, ui_base
from twrl_exp.store import StoreError


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
        description=f"Per env, a ranked table of agents from the MLflow store. {RANKING_RULE} "
        f"{SEEDS_RULE}",
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
    p.add_argument(
        "--no-external", action="store_true", help="hide the published (rl-baselines3-zoo) rows"
    )
    p.add_argument(
        "--ui-url",
        default=None,
        metavar="URL",
        help=f"the MLflow UI to link to (default: the tracking server, else {DEFAULT_UI_URL})",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (0, or 2 for bad input). It only reads the
    store (a read-only one, or one on a full disk, will do) and writes only its pages."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, or an error already explained on stderr
        return int(exc.code or 0)
    if args.since and args.until and args.since > args.until:
        print("leaderboard: error: --since is after --until.", file=sys.stderr)
        return 2
    uri = args.tracking_uri or _default_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
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
    except StoreError as exc:
        print(f"leaderboard: error: {exc}", file=sys.stderr)
        return 2
    except MlflowException as exc:
        reason = exc.message.strip().split(". ")[0].rstrip(".")
        print(f"leaderboard: error: cannot read {uri}: {reason}.", file=sys.stderr)
        return 2
    if not runs:
        print(f"No finished runs in {uri} match the filters, so there is nothing to rank.")
        return 0
    rows = build_rows(runs)
    if args.markdown != "-":  # Markdown on stdout is the whole output, for pipes
        render_terminal(rows, external=not args.no_external)
    try:
        if args.markdown == "-":
            sys.stdout.write(render_markdown(rows, external=not args.no_external))
        elif args.markdown:
            _write(Path(args.markdown), render_markdown(rows, external=not args.no_external))
            print(f"Markdown: {Path(args.markdown).resolve()}")
        if not args.no_html:
            attach_curves_and_videos(rows, uri)
            page = Path(args.html).resolve()
            stamp = f"{uri} · {len(runs)} runs · {datetime.now():%Y-%m-%d %H:%M}"
            page_html = render_html(
                rows,
                ui_url=ui_base(uri, args.ui_url),
                subtitle=stamp,
                external=not args.no_external,
            )
            _write(page, page_html)
            print(f"HTML: {page.as_uri()}", file=sys.stderr if args.markdown == "-" else sys.stdout)
    except OSError as exc:
        print(
            f"leaderboard: error: cannot write {exc.filename or 'the page'}: {exc.strerror}; give "
            "--html (or --markdown) a writable path, or --no-html.",
            file=sys.stderr,
        )
        return 2
    return 0


def _write(path: Path, text: str) -> None:
    """Write ``text`` whole or not at all (a full disk leaves no half page behind)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        exc.filename = str(path)
        raise


def cli() -> None:
    """``twrl-leaderboard``: the same as ``python -m twrl_exp.leaderboard``."""
    raise SystemExit(main())
