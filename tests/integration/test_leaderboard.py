"""The leaderboard over real training runs: grouping, ranking with CIs, filters, outputs."""

from __future__ import annotations

import io
import itertools
import math
import os
import re
import struct
import subprocess
import time
import zlib
from datetime import date, datetime, timedelta
from html import unescape
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient
from rich.console import Console

from twrl_exp import leaderboard
from twrl_exp.leaderboard import Row, RunRecord, build_rows, load_runs, main, render_markdown
from twrl_exp.monitor.tracking import ensure_experiment
from twrl_exp.paths import config_dir
from twrl_exp.stats import aggregate_curves, bootstrap_ci, iqm
from twrl_exp.train import run

QUIET = [
    "monitor.console=false",
    "monitor.checkpoint.enabled=false",
    "monitor.mlflow.log_model=false",
    "monitor.curve=false",
    "eval.every_steps=null",
    "eval.episodes=5",
]
# REINFORCE's CartPole preset solves seeds 0-2 within about 120k env steps (1-2 s each); the
# random agent never does. The expected ranking does not hang on a lucky seed.
LEARNER = ["train.stop_when_solved=true", "train.max_env_steps=250000"]
RANDOM = [
    *("model=none", "policy=random", "update=none"),
    *("train.max_env_steps=20000", "monitor.video.enabled=false"),
]
CHROMIUM = Path("/usr/bin/chromium")


def _train(*overrides: str) -> None:
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        run(compose("config", [*QUIET, *overrides]))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Three seeds each of REINFORCE (with its final video) and of the random agent on
    CartPole-v1, trained once for the module."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('leaderboard') / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        for seed in range(3):
            _train(*LEARNER, f"seed={seed}")
            _train(*RANDOM, f"seed={seed}")
    return uri


@pytest.fixture(scope="module")
def page(store: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    html = tmp_path_factory.mktemp("page") / "leaderboard.html"
    assert main(["--tracking-uri", store, "--html", str(html)]) == 0
    return html


def test_seeds_are_grouped_and_the_learner_ranks_first_with_its_ci(store: str) -> None:
    rows = build_rows(load_runs(store, envs=["CartPole-v1"]))
    assert [r.composition for r in rows] == ["reinforce/categorical/mlp", "none/random/none"]
    assert [r.rank for r in rows] == [1, 2]
    learner, baseline = rows
    for row in rows:
        assert row.env == "CartPole-v1"
        assert row.n_seeds == 3
        assert sorted(r.seed for r in row.runs) == ["0", "1", "2"]
        assert row.best_iqm is not None
        assert row.best_ci is not None
        assert row.best_ci[0] <= row.best_iqm <= row.best_ci[1]
    assert learner.n_solved == 3
    assert 0 < learner.episodes_to_solve < 3000
    assert learner.env_steps_to_solve > 0
    assert learner.time_to_solve_s > 0
    assert learner.score >= 475
    assert learner.final_eval > 400
    assert baseline.n_solved == 0
    assert baseline.score < 50
    assert learner.best_ci[0] > baseline.best_ci[1]
    # Only the differing hyperparameters are spelt out; the seed and bookkeeping never are.
    assert learner.differing == {
        "train.max_env_steps": "250000",
        "train.stop_when_solved": "True",
    }
    assert "seed" not in learner.agent
    assert "monitor.console" not in learner.agent


def test_markdown_lists_both_rows_in_rank_order(store: str) -> None:
    text = render_markdown(build_rows(load_runs(store)))
    assert leaderboard.RANKING_RULE in text
    assert "## CartPole-v1" in text
    ranked = [line for line in text.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(ranked) == 2
    assert ranked[0].startswith("| 1 | reinforce/categorical/mlp ")
    assert ranked[1].startswith("| 2 | none/random/none ")
    assert re.search(r"\| \d[\d,]* \(3/3\) \|", text)  # episodes to solve, 3 of 3 solved
    assert "— (0/3)" in text


def test_the_command_prints_the_table_and_writes_markdown_and_html(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "220")
    monkeypatch.chdir(tmp_path)
    assert main(["--tracking-uri", store, "--markdown", "lb.md"]) == 0
    out = capsys.readouterr().out
    assert out.index("reinforce/categorical/mlp") < out.index("none/random/none")
    assert "Ranked per env" in out
    assert (tmp_path / "lb.md").read_text().startswith("# Leaderboard")
    assert (tmp_path / "leaderboard.html").is_file()  # the documented default


def test_an_80_column_terminal_shows_every_figure_whole(
    store: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["--tracking-uri", store, "--no-html"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    for row in build_rows(load_runs(store)):
        assert f"{row.best_mean:,.1f}" in out  # on one line, not split
        if row.best_ci is not None:
            assert f"[{row.best_ci[0]:,.1f}, {row.best_ci[1]:,.1f}]" in out
        assert f"{row.final_eval:,.1f}" in out


def test_markdown_to_stdout_is_only_markdown(
    store: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--tracking-uri", store, "--markdown", "-"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Leaderboard")
    assert not set("┏━┃│└┡") & set(out)  # no rich table mixed in


def test_the_html_page_has_one_chart_per_env_one_curve_per_row_and_links(
    store: str, page: Path
) -> None:
    text = page.read_text()
    assert text.count("<svg") == 1
    assert text.count("class='curve'") == 2
    assert "solved (475)" in text
    assert not re.search(r"<(script|link|img|iframe)|src=", text)  # nothing to fetch
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("CartPole-v1")
    assert experiment is not None
    found = client.search_runs([experiment.experiment_id])
    assert len(found) == 6
    for r in found:
        # the run's charts, in the model-training view (not MLflow's GenAI default)
        url = (
            f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs/"
            f"{r.info.run_id}/model-metrics?workflowType=machine_learning"
        )
        assert f"href='{url}'" in text
    assert text.index("reinforce/categorical/mlp") < text.index("none/random/none")
    videos = re.findall(r"href='(file://[^']*/videos/final\.mp4)'>s(\d) final\.mp4<", text)
    assert sorted(seed for _, seed in videos) == ["0", "1", "2"]  # the learner's runs
    assert all(Path(url.removeprefix("file://")).is_file() for url, _ in videos)


def test_filters(
    store: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "220")
    assert main(["--tracking-uri", store, "--env", "Nope-v0", "--no-html"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == (
        f"No finished runs in {store} match the filters, so there is nothing to rank."
    )
    assert [r.composition for r in build_rows(load_runs(store, tags={"update": "none"}))] == [
        "none/random/none"
    ]
    assert main(["--tracking-uri", store, "--tag", "update=none", "--no-html"]) == 0
    out = capsys.readouterr().out
    assert "none/random/none" in out
    assert "reinforce" not in out
    assert load_runs(store, tags={"update": "td_lambda"}) == []
    assert load_runs(store, experiments=["Other"]) == []
    today = date.today()
    assert len(load_runs(store, experiments=["CartPole-v1"], since=today, until=today)) == 6
    assert load_runs(store, since=today + timedelta(days=1)) == []
    assert load_runs(store, until=today - timedelta(days=1)) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--since", "2025-13-01"], "'2025-13-01' is not a date: use YYYY-MM-DD."),
        (["--until", "yesterday"], "'yesterday' is not a date: use YYYY-MM-DD."),
        (["--tag", "update"], "'update' is not a tag filter: use key=value."),
        (["--since", "2025-02-01", "--until", "2025-01-01"], "--since is after --until."),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_code_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_an_empty_store_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["--tracking-uri", uri]) == 0
    assert capsys.readouterr().out.strip() == f"No runs to rank: there is no MLflow store at {uri}."
    assert not (tmp_path / "none.db").exists()


def test_runs_differing_in_learning_rate_are_different_rows(make_cfg, isolated_mlflow: str) -> None:
    tiny = [*QUIET, "train.max_env_steps=2000", "eval.final=false"]
    for overrides in (["seed=0"], ["seed=1"], ["seed=0", "update.lr=0.01"]):
        run(make_cfg(*tiny, *overrides))
    rows = build_rows(load_runs(isolated_mlflow))
    assert len(rows) == 2
    assert sorted((r.agent["update.lr"], r.n_seeds) for r in rows) == [("0.005", 2), ("0.01", 1)]
    assert sorted(r.label for r in rows) == [  # what differs first: the composition is shared
        "lr=0.005 (reinforce/categorical/mlp)",
        "lr=0.01 (reinforce/categorical/mlp)",
    ]
    assert all(r.best_iqm is None and r.best_ci is None for r in rows)  # < 3 seeds: mean only


def _fake_run(
    client: MlflowClient,
    experiment_id: str,
    seed: int,
    best: float,
    start_ms: int | None = None,
    **tags: str,
) -> str:
    params = {"env.id": "Toy-v0", "update.name": "none", "seed": str(seed)}
    found = client.create_run(experiment_id, start_time=start_ms, tags={"env": "Toy-v0", **tags})
    run_id = found.info.run_id
    for key, value in params.items():
        client.log_param(run_id, key, value)
    client.log_metric(run_id, "best_mean_return", best)
    client.log_metric(run_id, "episode/mean_return_100", best, step=100)
    client.set_terminated(run_id, "FINISHED")
    return run_id


def test_sweep_parents_pruned_and_unfinished_runs_are_left_out_and_text_is_escaped(
    isolated_mlflow: str, tmp_path: Path
) -> None:
    client = MlflowClient(tracking_uri=isolated_mlflow)
    experiment_id = ensure_experiment(client, "Toy-v0", isolated_mlflow)
    kept = _fake_run(client, experiment_id, 0, 1.0, policy="<b>bold</b>")
    _fake_run(client, experiment_id, 1, 2.0, sweep="grid")
    pruned = _fake_run(client, experiment_id, 2, 3.0, stopped="pruned")
    running = client.create_run(experiment_id, tags={"env": "Toy-v0"}).info.run_id
    assert {r.run_id for r in load_runs(isolated_mlflow)} == {kept}
    assert {r.run_id for r in load_runs(isolated_mlflow, include_pruned=True)} == {kept, pruned}
    assert running not in {r.run_id for r in load_runs(isolated_mlflow, include_pruned=True)}

    video = tmp_path / "episode <0>.mp4"
    video.write_bytes(b"\x00")
    client.log_artifact(kept, str(video), "videos")
    html = tmp_path / "lb.html"
    assert (
        main(["--tracking-uri", isolated_mlflow, "--html", str(html), "--ui-url", "http://x/"]) == 0
    )
    text = html.read_text()
    assert "<b>" not in text
    assert "&lt;b&gt;bold&lt;/b&gt;" in text
    assert f"href='http://x/#/experiments/{experiment_id}/runs/{kept}/model-metrics?" in text
    assert re.search(r"href='file://[^']*/videos/episode%20%3C0%3E\.mp4'", text)


def test_a_seed_run_twice_is_one_seed_counted_at_its_latest_run(
    isolated_mlflow: str, tmp_path: Path
) -> None:
    client = MlflowClient(tracking_uri=isolated_mlflow)
    experiment_id = ensure_experiment(client, "Toy-v0", isolated_mlflow)
    start = int(time.time() * 1000) - 60_000
    earlier = _fake_run(client, experiment_id, 0, 10.0, start_ms=start)
    latest = _fake_run(client, experiment_id, 0, 30.0, start_ms=start + 1000)
    (row,) = build_rows(load_runs(isolated_mlflow))
    assert (row.n_seeds, row.seeds_text) == (1, "1 (2 runs)")
    assert [r.run_id for r in row.runs] == [latest]
    assert [r.run_id for r in row.repeats] == [earlier]
    assert row.best_mean == 30.0  # the latest run's value, not the mean of the copies
    assert row.best_iqm is None  # no IQM nor interval over copies of one seed
    assert row.best_ci is None

    _fake_run(client, experiment_id, 1, 20.0, start_ms=start)
    _fake_run(client, experiment_id, 2, 40.0, start_ms=start)
    (row,) = build_rows(load_runs(isolated_mlflow))
    assert (row.n_seeds, row.seeds_text) == (3, "3 (4 runs)")
    assert row.best_iqm == iqm([30.0, 20.0, 40.0])
    assert row.best_ci == bootstrap_ci([30.0, 20.0, 40.0], iqm, confidence=0.95, seed=0)
    text = render_markdown([row])
    assert "| 3 (4 runs) |" in text
    assert leaderboard.SEEDS_RULE in text

    html = tmp_path / "lb.html"
    assert main(["--tracking-uri", isolated_mlflow, "--html", str(html)]) == 0
    page = html.read_text()
    counted, _, not_counted = page[page.index("<table") :].partition("not counted")
    assert f"/runs/{latest}/" in counted
    assert f"/runs/{earlier}/" in not_counted.split("</td>")[0]


_RUN_NUMBER = itertools.count()


def _record(
    seed: int,
    best: float,
    agent: dict[str, str],
    minute: int = 0,
    composition: tuple[str, str, str] = ("reinforce", "categorical", "mlp"),
) -> RunRecord:
    """A finished CartPole run as the leaderboard reads it, without MLflow."""
    number = next(_RUN_NUMBER)
    groups = dict(zip(("update.name", "policy.name", "model.name"), composition, strict=True))
    solved = 1234.0 if best >= 475 else math.nan
    return RunRecord(
        run_id=f"run{number:04d}",
        run_name=f"run {number}",
        experiment_id="1",
        env="CartPole-v1",
        seed=str(seed),
        start_time=datetime(2025, 1, 1, 12, minute),
        artifact_uri="",
        params={"env.id": "CartPole-v1", **groups, "seed": str(seed), **agent},
        metrics={
            "best_mean_return": best,
            "final_eval_mean_return": best - 1.5,
            "episodes_to_solve": solved,
        },
        tags={},
    )


def test_repeats_of_a_seed_take_no_part_in_solved_counts_or_the_3_seed_mark() -> None:
    agent = {"update.lr": "0.01"}
    runs = [
        _record(0, 500.0, agent, minute=1),  # solved, then rerun without solving
        _record(0, 300.0, agent, minute=2),
        _record(1, 480.0, agent, minute=1),
    ]
    (row,) = build_rows(runs)
    assert (row.n_seeds, row.n_solved) == (2, 1)
    assert row.best_mean == pytest.approx(390.0)
    assert row.best_iqm is None  # 3 runs, but 2 seeds: '< 3 seeds'
    assert "— (< 3 seeds)" in render_markdown([row])
    assert re.search(r"\| 1,234 \(1/2\) \|", render_markdown([row]))


def _many_rows() -> list[Row]:
    """Four agents that differ in lr and steps_per_batch, 3 seeds each (so an IQM and a CI), and
    the random agent with 1 seed."""
    runs = [
        _record(seed, 400.0 + 7.3 * i + 2.1 * seed, {"update.lr": lr, "update.steps_per_batch": n})
        for i, (lr, n) in enumerate(itertools.product(("0.005", "0.01"), ("200", "1000")))
        for seed in range(3)
    ]
    random = _record(0, 21.7, {}, composition=("none", "random", "none"))
    return build_rows([*runs, random])


@pytest.mark.parametrize("width", [60, 80, 100, 140, 200])
def test_the_terminal_never_splits_a_number_or_a_key_value_over_lines(width: int) -> None:
    rows = _many_rows()
    out = io.StringIO()
    leaderboard.render_terminal(rows, Console(file=out, width=width))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= width
    whole = [word for row in rows for word in row.label.split()]
    for row in rows:
        whole += [f"{row.best_mean:,.1f}", f"{row.final_eval:,.1f}", row.seeds_text]
        if row.best_ci is not None:
            whole.append(f"[{row.best_ci[0]:,.1f}, {row.best_ci[1]:,.1f}]")
    for word in whole:
        assert re.search(rf"(?<!\S){re.escape(word)}(?!\S)", text), f"'{word}' split at {width}"
    assert "steps_per_batch=200" in whole
    assert leaderboard.SEEDS_RULE in " ".join(text.split())  # the footnote states the rule


def test_labels_lead_with_what_differs_and_the_legend_sits_whole_under_the_chart() -> None:
    rows = _many_rows()
    for row in rows:
        row.curve = aggregate_curves([([0, 1000, 2000], [10.0, row.best_mean / 2, row.best_mean])])
    labels = {row.label for row in rows}
    assert "lr=0.01, steps_per_batch=1000 (reinforce/categorical/mlp)" in labels
    assert "lr=0.005, steps_per_batch=1000 (reinforce/categorical/mlp)" in labels
    assert "none/random/none" in labels  # its own composition is what tells it apart
    page = leaderboard.render_html(rows)
    chart_end = page.index("</svg>")
    legend = re.search(r"<ul class='legend'>(.*?)</ul>", page)
    assert legend is not None
    assert legend.start() > chart_end  # below the plot, over no curve
    items = re.findall(r"</span>(#\d+ [^<]*)</li>", legend.group(1))
    assert items == [f"#{row.rank} {row.label}" for row in rows]  # whole, not clipped
    reinforce = [item.split(" ", 1)[1] for item in items if "reinforce" in item]
    # They differ within their first 32 characters, before the composition they share.
    assert len({item[:32] for item in reinforce}) == len(reinforce) == 4


def test_twenty_five_agents_have_distinct_colours_then_dash_patterns() -> None:
    runs = [_record(0, 100.0 + i, {"update.lr": f"0.{i + 1:03d}"}) for i in range(25)]
    rows = build_rows(runs)
    for row in rows:
        row.curve = aggregate_curves([([0, 1000], [0.0, row.best_mean])])
    page = leaderboard.render_html(rows)
    curves = re.findall(
        r"<polyline class='curve'[^>]* stroke='(#\w+)' stroke-width='2'(?: stroke-dasharray='"
        r"([^']*)')?>",
        page,
    )
    assert len(curves) == 25
    assert len(set(curves)) == 25
    assert len({color for color, _ in curves[:20]}) == 20  # bands have colour only
    table = page[page.index("<table") :]
    swatches = re.findall(r"class='sw' style='border-top:3px (\w+) (#\w+)'", table)
    assert len(set(swatches)) == 25


def test_the_page_explains_iqm_the_bootstrap_interval_the_band_and_the_seeds() -> None:
    page = leaderboard.render_html(_many_rows())
    text = " ".join(unescape(re.sub(r"<[^>]+>", " ", page)).split())
    assert "interquartile mean" in text
    assert "drop the lowest and the highest quarter" in text
    assert "percentile-bootstrap" in text
    assert "resampled with replacement" in text
    assert "shaded band" in text
    assert "not a confidence interval" in text
    assert leaderboard.SEEDS_RULE in text


# --------------------------------------------------------------------------- headless Chromium


def _scanlines(png: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and filtered scanlines of a non-interlaced PNG (enough to compare two)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", (0, 0, 8, 2)
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        header = struct.unpack(">IIBB", body[:10]) if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, color = header
    raw, stride = zlib.decompress(idat), 1 + width * {2: 3, 6: 4}[color] * depth // 8
    return width, height, [raw[i : i + stride] for i in range(0, len(raw), stride)]


def _screenshot(html: Path, tmp_path: Path, name: str) -> bytes:
    shot = tmp_path / f"{name}.png"
    profile = tmp_path / f"profile-{name}"
    subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            html.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert shot.is_file(), f"chromium wrote no screenshot of {html}"
    return shot.read_bytes()


@pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason="/usr/bin/chromium is not installed: the headless rendering check needs it",
)
def test_the_page_renders_in_headless_chromium_with_its_curves(page: Path, tmp_path: Path) -> None:
    start = time.monotonic()
    png = _screenshot(page, tmp_path, "page")
    width, height, lines = _scanlines(png)
    assert (width, height) == (1200, 1600)
    assert len(png) > 15_000  # text, tables and chart, not a blank page
    # The same page without the curves and their bands: the pixels that change are the curves.
    bare = tmp_path / "bare.html"
    text = re.sub(r"<polyline class='curve'.*?</polyline>|<polygon [^>]*/>", "", page.read_text())
    bare.write_text(text)
    _, _, bare_lines = _scanlines(_screenshot(bare, tmp_path, "bare"))
    changed = sum(a != b for a, b in zip(lines, bare_lines, strict=True))
    assert changed >= 100, f"only {changed} pixel rows show curves"
    assert time.monotonic() - start < 120


def test_rows_the_test_cannot_tell_apart_share_a_rank_and_each_has_a_compare_command() -> None:
    """Per seed best-100 means: lr 0.01 400/410/420, lr 0.02 405/415/395 (tied with it: Welch
    p = 0.6), lr 0.03 100/110/105 (clearly behind: its own band), lr 0.04 102/108 (tied with
    lr 0.03, not with the first)."""
    values = {"0.01": [400, 410, 420], "0.02": [405, 415, 395], "0.03": [100, 110, 105],
              "0.04": [102, 108]}  # fmt: skip
    runs = [
        _record(seed, float(best), {"update.lr": lr})
        for lr, bests in values.items()
        for seed, best in enumerate(bests)
    ]
    for record in runs:
        record.metrics.pop("episodes_to_solve")  # none solved: ranked by IQM / mean
    rows = build_rows(runs)
    assert [(r.differing["lr"], r.rank_text) for r in rows] == [
        ("0.01", "1"), ("0.02", "1="), ("0.03", "3"), ("0.04", "3=")
    ]  # fmt: skip
    text = render_markdown(rows)
    assert "| 1= |" in text
    assert "| 3= |" in text
    assert leaderboard.TIE_RULE in text
    first, second = rows[0], rows[1]
    ids = {row.differing["lr"]: ",".join(r.run_id for r in row.runs) for row in rows}
    assert first.compare_command == f"twrl-compare runs:{ids['0.01']} runs:{ids['0.02']}"
    assert rows[2].compare_command == f"twrl-compare runs:{ids['0.03']} runs:{ids['0.01']}"
    page = leaderboard.render_html(rows)
    assert page.count("twrl-compare runs:") == 4
    assert second.compare_command in page


def test_published_rows_sit_beside_ours_unranked_and_can_be_hidden() -> None:
    """CartPole-v1's rl-baselines3-zoo rows (one agent each) appear under our table in the
    terminal, Markdown and the page, with their source; they take no rank, and
    ``--no-external`` (external=False) hides them."""
    rows = _many_rows()
    ranks = [r.rank_text for r in rows]
    out = io.StringIO()
    leaderboard.render_terminal(rows, Console(file=out, width=80))
    text = " ".join(out.getvalue().split())
    assert "external (published, not ranked): a2c 500k: 500.0 ± 0.0; dqn 50k: 500.0 ± 0.0" in text
    assert "ppo 100k: 500.0 ± 0.0" in text
    markdown = render_markdown(rows)
    assert "| rl-baselines3-zoo | ppo | 100k | 500.0 ± 0.0 | 1 |" in markdown
    assert "0088472b8cb622732bdbc4aa3d0d0abde86c67ed" in markdown  # the source, pinned
    page = leaderboard.render_html(rows)
    assert page.count("<table class='external'>") == 1
    assert "never ranked, never in our statistics" in page
    assert [r.rank_text for r in rows] == ranks
    assert "rl-baselines3-zoo" not in render_markdown(rows, external=False)
    assert "rl-baselines3-zoo" not in leaderboard.render_html(rows, external=False)
    hidden = io.StringIO()
    leaderboard.render_terminal(rows, Console(file=hidden, width=80), external=False)
    assert "published" not in hidden.getvalue()
