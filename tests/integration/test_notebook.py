"""notebooks/: `make notebook` opens analysis.ipynb in JupyterLab with a kernel that runs it; the
notebook runs top to bottom on a small store; its curves end where their data ends and its
legends sit outside the axes."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import matplotlib.pyplot as plt
import nbformat
import numpy as np
import optuna
import pytest
from matplotlib.figure import Figure
from nbclient import NotebookClient

from twrl_exp.build import project_root
from twrl_exp.train import run

NOTEBOOKS = project_root() / "notebooks"


def _load_helpers() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "analysis_helpers", NOTEBOOKS / "analysis_helpers.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as the notebook's own import would; dataclasses need it
    spec.loader.exec_module(module)
    return module


helpers = _load_helpers()


def test_the_analysis_notebook_executes(make_cfg, tmp_path: Path, isolated_mlflow: str) -> None:
    fast = [
        "monitor.console=false",
        "monitor.video.enabled=false",
        "eval.every_steps=null",
        "monitor.checkpoint.enabled=false",
    ]
    random_agent = ["model=none", "policy=random", "update=none"]
    for seed in range(3):
        run(make_cfg(f"seed={seed}", *fast, "train.max_env_steps=6000"))
        # a shorter agent than the other: the notebook draws it to its own end
        run(make_cfg(f"seed={seed}", *fast, *random_agent, "train.max_env_steps=3000"))
    sweep = subprocess.run(
        [
            sys.executable,
            "train.py",
            "-m",
            "hydra/sweeper=twrl_optuna",
            "hydra.sweeper.study_name=nb",
            f"hydra.sweeper.storage=sqlite:///{tmp_path}/o.db",
            f"hydra.sweeper.experiment_dir={tmp_path}/exp",
            "hydra.sweeper.n_trials=3",
            "hydra.sweeper.sampler.name=random",
            "update.lr=tag(log,interval(1e-4,1e-1))",
            "hydra.sweeper.plots=false",
            *fast,
            "train.max_env_steps=6000",
            f"hydra.sweep.dir={tmp_path}/multirun",
        ],
        cwd=project_root(),
        env={**os.environ, "PYTHONPATH": str(project_root())},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert sweep.returncode == 0, sweep.stderr
    notebook = nbformat.read(NOTEBOOKS / "analysis.ipynb", as_version=4)
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        # JupyterLab (and VS Code) start the kernel in the notebook's folder
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    ).execute()
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/markdown", "")) for o in outputs
    )
    assert isolated_mlflow in text
    assert "CartPole-v1" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the learning curves and the sweep's view


# --------------------------------------------------------------------------- make notebook


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _api(base: str, path: str, token: str, method: str = "GET", body: Any = None) -> Any:
    request = urllib.request.Request(
        f"{base}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = response.read()
    return json.loads(payload) if payload else None


def _wait_for_server(base: str, token: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"`make notebook` exited with {server.returncode}:\n{server.stdout.read()}")
        try:
            _api(base, "/api/status", token)
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    pytest.fail("JupyterLab did not answer within 120 s")


def _execute(base: str, token: str, kernel_id: str, code: str) -> dict[str, Any]:
    """Run ``code`` in the server's kernel over its websocket; the execute_reply's content."""
    import websocket  # jupyter_server's dependency; imported here, the only test that uses it

    ws = websocket.create_connection(
        f"{base.replace('http', 'ws', 1)}/api/kernels/{kernel_id}/channels",
        header=[f"Authorization: token {token}"],
        timeout=120,
    )
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "msg_type": "execute_request", "username": "test"}
    ws.send(
        json.dumps(
            {
                "header": {**header, "session": uuid.uuid4().hex, "version": "5.3"},
                "parent_header": {},
                "metadata": {},
                "content": {"code": code, "silent": False, "allow_stdin": False},
                "channel": "shell",
            }
        )
    )
    try:
        while True:
            message = json.loads(ws.recv())
            if (
                message.get("msg_type") == "execute_reply"
                and message["parent_header"].get("msg_id") == msg_id
            ):
                return message["content"]
    finally:
        ws.close()


def test_make_notebook_opens_the_notebook_with_a_kernel_that_imports_its_helpers(
    tmp_path: Path,
) -> None:
    """The notebook README's command, `make notebook`, on the venv of `make install`
    (pip install -e ".[dev]"): JupyterLab serves the notebook, and a kernel started for it, as
    opening it does, imports the notebook's helpers and twrl_exp."""
    venv = Path(sys.prefix)
    assert (venv / "bin" / "jupyter-lab").is_file(), 'jupyterlab comes with pip install ".[dev]"'
    port, token = _free_port(), uuid.uuid4().hex
    jupyter_dirs = {
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
    }
    args = f"--no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token={token}"
    # -o: the venv is installed already; make must not rebuild it
    command = ["make", "-o", f"{venv}/.installed", "notebook", f"VENV={venv}", f"ARGS={args}"]
    server = subprocess.Popen(
        command,
        cwd=project_root(),
        env={**os.environ, **jupyter_dirs},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(base, token, server)
        # JupyterLab serves the notebook's folder and opens the notebook
        root = _api(base, "/api/contents", token)
        assert {"analysis.ipynb", "analysis_helpers.py"} <= {
            item["name"] for item in root["content"]
        }
        session = _api(
            base,
            "/api/sessions",
            token,
            "POST",
            {"path": "analysis.ipynb", "type": "notebook", "kernel": {"name": "python3"}},
        )
        code = f"import sys, analysis_helpers, twrl_exp; assert sys.prefix == {str(venv)!r}"
        reply = _execute(base, token, session["kernel"]["id"], code)
        assert reply["status"] == "ok", reply
        _api(base, "/api/shutdown", token, "POST")
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


# --------------------------------------------------------------------------- the figures


def _line(fig: Figure, label_start: str) -> Any:
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith(label_start)]
    return line


def _assert_legend_outside_the_axes(fig: Figure) -> None:
    fig.canvas.draw()
    assert [ax.get_legend() for ax in fig.axes] == [None] * len(fig.axes)
    (legend,) = fig.legends
    box = legend.get_window_extent()
    for ax in fig.axes:
        if ax.get_visible():
            assert not box.overlaps(ax.get_window_extent()), "the legend covers an axes"
    whole = fig.bbox
    assert whole.x0 <= box.x0 <= box.x1 <= whole.x1, "the legend is cut off the figure"
    assert whole.y0 <= box.y0 <= box.y1 <= whole.y1, "the legend is cut off the figure"


def test_a_shorter_run_ends_at_its_last_step_not_the_longest_runs_end() -> None:
    short = helpers.aggregate_seeds([([0, 1000, 3000], [5.0, 9.0, 20.0])])
    long = helpers.aggregate_seeds([([0, 5000, 10000], [5.0, 30.0, 60.0])])
    fig = helpers.plot_learning_curves("Env-v0", [("short", short), ("long", long)])
    try:
        short_line, long_line = _line(fig, "short"), _line(fig, "long")
        assert short_line.get_xdata()[-1] == 3000
        assert np.max(short_line.get_xdata()) == 3000
        assert short_line.get_ydata()[-1] == 20.0
        assert long_line.get_xdata()[-1] == 10000
        _assert_legend_outside_the_axes(fig)
    finally:
        plt.close(fig)


def test_the_mean_and_band_cover_only_steps_where_every_seed_has_data() -> None:
    band = helpers.aggregate_seeds(
        [([100, 2000, 4000], [0.0, 0.0, 0.0]), ([0, 1000, 2000], [2.0, 2.0, 2.0])], points=5
    )
    assert band.steps.tolist() == [100, 575, 1050, 1525, 2000]
    np.testing.assert_allclose(band.mean, 1.0)
    # two seeds 0 and 2: std sqrt(2), standard error 1, so 1.96 either side
    np.testing.assert_allclose(band.half_width, 1.96)
    ((tail_steps, tail_values),) = band.tails  # the longer seed, to its own last step
    assert tail_steps.tolist() == [2000, 4000]
    assert tail_values.tolist() == [0.0, 0.0]


def test_a_tail_joins_the_mean_and_ends_at_its_seeds_last_value() -> None:
    band = helpers.aggregate_seeds(
        [([0, 10], [0.0, 10.0]), ([0, 10, 20, 30], [0.0, 10.0, 20.0, 25.0])], points=3
    )
    assert band.steps[-1] == 10
    ((tail_steps, tail_values),) = band.tails
    assert tail_steps.tolist() == [10, 20, 30]
    assert tail_values.tolist() == [10.0, 20.0, 25.0]
    fig = helpers.plot_learning_curves("Env-v0", [("agent", band)])
    try:
        drawn = [ln for ln in fig.axes[0].get_lines() if not ln.get_label().startswith("agent")]
        assert [ln.get_xdata()[-1] for ln in drawn] == [30]
    finally:
        plt.close(fig)


def test_one_seed_has_no_band_and_no_seed_no_curve() -> None:
    band = helpers.aggregate_seeds([([0, 5, 5, 10], [1.0, 7.0, 3.0, 4.0]), ([], [])], points=3)
    assert band.n_seeds == 1
    assert band.mean.tolist() == [1.0, 3.0, 4.0]  # of two values at one step the last counts
    assert np.isnan(band.half_width).all()
    assert band.tails == []
    assert helpers.aggregate_seeds([([], [])]) is None


def test_seeds_with_no_step_in_common_are_each_drawn_alone_to_their_own_end() -> None:
    band = helpers.aggregate_seeds([([0, 10], [1.0, 2.0]), ([20, 30], [3.0, 4.0])])
    assert band.steps.size == 0
    assert [(s.tolist(), v.tolist()) for s, v in band.tails] == [
        ([0, 10], [1.0, 2.0]),
        ([20, 30], [3.0, 4.0]),
    ]


def test_the_learning_curves_legend_sits_outside_the_axes_with_many_long_labels() -> None:
    agents = [
        (
            f"#{i} reinforce/categorical/mlp (update.lr=0.00{i}, model.hidden=[64, 64])",
            helpers.aggregate_seeds([([0, 50, 100 * i], [0.0, 100.0, 500.0])] * 3),
        )
        for i in range(1, 7)
    ]
    fig = helpers.plot_learning_curves("CartPole-v1", agents)
    try:
        _assert_legend_outside_the_axes(fig)
    finally:
        plt.close(fig)


def _study() -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    kind = optuna.distributions.CategoricalDistribution(["mlp", "linear"])
    distributions = {"update.lr": lr, "model": kind}
    completed = {
        100.0: {"update.lr": 1e-3, "model": "mlp"},
        40.0: {"update.lr": 0.05, "model": "linear"},
    }
    for value, params in completed.items():
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=distributions, value=value)
        )
    study.add_trial(
        optuna.trial.create_trial(
            params={"update.lr": 1e-4, "model": "mlp"},
            distributions=distributions,
            state=optuna.trial.TrialState.PRUNED,
            intermediate_values={0: 5.0, 2: 12.0, 1: 8.0},
        )
    )
    return study


def test_a_sweeps_pruned_trials_are_hollow_at_their_last_value_and_its_legend_is_outside() -> None:
    fig = helpers.plot_study("study nb (maximize)", _study().trials)
    try:
        lr_axes = next(ax for ax in fig.axes if ax.get_xlabel() == "update.lr")
        complete, pruned = lr_axes.collections
        assert sorted(complete.get_offsets()[:, 1].tolist()) == [40.0, 100.0]
        assert pruned.get_offsets().tolist() == [[1e-4, 12.0]]
        assert pruned.get_facecolors().size == 0 or pruned.get_facecolors()[:, 3].max() == 0
        assert lr_axes.get_xscale() == "log"
        _assert_legend_outside_the_axes(fig)
    finally:
        plt.close(fig)
