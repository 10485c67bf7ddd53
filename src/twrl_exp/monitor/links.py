"""Links into the MLflow UI that open where a user wants to be: the model-training view (MLflow
3.17 opens experiments in its GenAI view otherwise) and, for a run, its metric charts."""

from __future__ import annotations

DEFAULT_UI_URL = "http://127.0.0.1:5000"
_VIEW = "workflowType=machine_learning"
# Set on every experiment we create, so the UI opens it as model training.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def ui_base(tracking_uri: str, configured: str | None = None) -> str:
    """The UI's address: ``configured``, else the tracking server's, else ``mlflow ui``'s."""
    if configured:
        return configured.rstrip("/")
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return DEFAULT_UI_URL


def run_url(base: str, experiment_id: str, run_id: str, tab: str = "model-metrics") -> str:
    """A run's page (its charts by default) in the model-training view.

    >>> run_url("http://127.0.0.1:5000", "1", "abc")
    'http://127.0.0.1:5000/#/experiments/1/runs/abc/model-metrics?workflowType=machine_learning'
    """
    suffix = f"/{tab}" if tab else ""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}{suffix}?{_VIEW}"


def experiment_url(base: str, experiment_id: str) -> str:
    """An experiment's run table in the model-training view."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{_VIEW}"
