"""The leaderboard over real training runs: grouping, ranking with CIs, filters, outputs."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import time
import zlib
from datetime import date, timedelta
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient

from twrl_exp import leaderboard
from twrl_exp.leaderboard import build_rows, load_runs, main, render_markdown
from twrl_exp.monitor.tracking import ensure_experiment
from twrl_exp.paths import config_dir
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
    assert sorted(r.label for r in rows) == [
        "reinforce/categorical/mlp lr=0.005",
        "reinforce/categorical/mlp lr=0.01",
    ]
    assert all(r.best_iqm is None and r.best_ci is None for r in rows)  # < 3 seeds: mean only


def _fake_run(client: MlflowClient, experiment_id: str, seed: int, best: float, **tags: str) -> str:
    params = {"env.id": "Toy-v0", "update.name": "none", "seed": str(seed)}
    found = client.create_run(experiment_id, tags={"env": "Toy-v0", **tags})
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
