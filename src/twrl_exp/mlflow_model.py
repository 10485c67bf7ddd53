"""The trained agent as an MLflow model, so the run page's Models tab, the model registry and
``mlflow.pyfunc.load_model`` work:

    agent = mlflow.pyfunc.load_model(f"models:/{model_id}")   # printed at the end of the run
    actions = agent.predict(observations)                    # [N, *obs_shape] -> [N, ...]

The model is a pyfunc with ``loader_module=twrl_exp.mlflow_model``: loading it imports this
module (twrl-exp must be installed) and reads ``config.yaml`` and ``agent.pt`` the way
:func:`twrl_exp.artifacts.load_agent` does, as tensors and schema-checked values: nothing in the
stored model is unpickled.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

AGENT_MODEL = "agent"  # the default model name; runs name their model after themselves
# In a model's folder: the observations' dtype where it is not float32 (uint8 frames, boolean
# grids), so that the model's signature takes the env's own observations.
OBSERVATION_DTYPE = "observation_dtype.txt"


class AgentModel:
    """``predict(observations)`` -> the agent's greedy actions, one per row."""

    def __init__(self, agent: Any, observation_shape: tuple[int, ...]) -> None:
        self.agent = agent
        self.observation_shape = observation_shape

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        del params
        if hasattr(model_input, "to_numpy"):  # a pandas DataFrame
            model_input = model_input.to_numpy()
        obs = np.asarray(model_input)
        if obs.shape[1:] != self.observation_shape:
            obs = obs.reshape((-1, *self.observation_shape))
        return self.agent.act(obs, greedy=True)


def _load_pyfunc(data_path: str) -> AgentModel:
    """MLflow's entry point for ``loader_module`` models."""
    from twrl_exp.artifacts import agent_from_folder

    agent, _, observation_shape = agent_from_folder(Path(data_path), source=data_path)
    return AgentModel(agent, observation_shape)


@contextlib.contextmanager
def _tracking(uri: str) -> Iterator[None]:
    """MLflow's model logging reads the global tracking URI: point it at ``uri`` and restore
    exactly what was there (the module setting and the environment variable) afterwards."""
    import os

    from mlflow.tracking._tracking_service import utils

    saved_global, saved_env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    utils.set_tracking_uri(uri)
    try:
        yield
    finally:
        utils._tracking_uri = saved_global
        if saved_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env


def log_agent_model(
    tracking_uri: str,
    experiment_id: str,
    run_id: str,
    folder: Path,
    observation_shape: tuple[int, ...],
    *,
    name: str = AGENT_MODEL,
    params: dict[str, str] | None = None,
) -> tuple[str, str]:
    """Log ``folder`` (config.yaml + agent.pt) as the pyfunc model ``name`` of ``run_id``,
    with the agent's ``params``; its model URI and model id."""
    import mlflow
    from mlflow.models import Model, ModelSignature
    from mlflow.types import Schema, TensorSpec

    dtype_file = folder / OBSERVATION_DTYPE
    dtype = np.dtype(dtype_file.read_text().strip() if dtype_file.exists() else np.float32)
    signature = ModelSignature(
        inputs=Schema([TensorSpec(dtype, (-1, *observation_shape))]),
        outputs=Schema([TensorSpec(np.dtype(np.float64), (-1,))]),
    )
    from mlflow.entities import LoggedModelStatus

    client = mlflow.MlflowClient(tracking_uri)
    # Created here, in the run's experiment (MLflow's fluent default would be experiment 0).
    model = client.create_logged_model(
        experiment_id=experiment_id,
        name=name,
        source_run_id=run_id,
        params={k: v[:6000] for k, v in (params or {}).items()},
    )
    with _tracking(tracking_uri), warnings.catch_warnings():
        # An input example would make MLflow load and run the model while logging it.
        warnings.filterwarnings("ignore", message=".*input example was not provided")
        info = Model.log(
            artifact_path=None,
            name=name,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            model_id=model.model_id,
            loader_module="twrl_exp.mlflow_model",
            data_path=str(folder),
            signature=signature,
            pip_requirements=["twrl-exp"],
        )
    if client.get_logged_model(model.model_id).status != LoggedModelStatus.READY:
        client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    return str(info.model_uri), str(model.model_id)
