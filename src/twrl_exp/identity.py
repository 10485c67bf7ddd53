"""What makes two runs the same agent: every logged param but the seed and run bookkeeping.

One rule, used where runs are grouped: the ``agent`` tag a run carries in MLflow (so the UI's
*Group by* gives seed-aggregated curves) and the leaderboard's rows.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from twrl_exp.choices import RENAMED

# Not part of an agent: how it is observed and evaluated, what a sweep asks of it, where its
# data goes, and what only tells its runs apart.
NOT_AGENT_PREFIXES = ("monitor.", "trial.", "eval.", "paths.")
NOT_AGENT_KEYS = frozenset({"seed", "resume", "rerun", "torch_threads"})
AGENT_TAG = "agent"


def agent_params(params: Mapping[str, Any]) -> dict[str, str]:
    """The flattened params that define the agent, as the text MLflow stores, with old option
    spellings (``update.entropy_coef``) read under their new keys."""
    out: dict[str, str] = {}
    for key, value in params.items():
        if key in NOT_AGENT_KEYS or key.startswith(NOT_AGENT_PREFIXES):
            continue
        new, spellings = RENAMED.get(key, (key, {}))
        out.setdefault(new, spellings.get(str(value), str(value)))
    return out


def agent_key(params: Mapping[str, Any]) -> str:
    """A short, stable id of the agent: equal for runs that differ only in seed.

    >>> agent_key({"update.lr": 0.01, "seed": 0}) == agent_key({"update.lr": "0.01", "seed": 3})
    True
    >>> agent_key({"update.lr": 0.01}) == agent_key({"update.lr": 0.02})
    False
    >>> agent_key({"update.lr_decay": "none"}) == agent_key({"update.lr_schedule": "constant"})
    True
    """
    text = json.dumps(sorted(agent_params(params).items()))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def agent_tag(params: Mapping[str, Any]) -> str:
    """``reinforce/categorical/mlp 3f2a9c1e0b``: readable in MLflow's *Group by* legend."""
    parts = [str(params.get(f"{g}.name", "?")) for g in ("update", "policy", "model")]
    return f"{'/'.join(parts)} {agent_key(params)}"


def model_name(run_name: str) -> str:
    """A run's name as an MLflow model name (which refuses ``/ : . % " '``).

    >>> model_name("lr=0.01 s1 reinforce/categorical/mlp CartPole-v1")
    'lr=0_01-s1-reinforce-categorical-mlp-CartPole-v1'
    """
    name = re.sub(r"[\s/]+", "-", run_name.strip())
    name = re.sub(r"[.:]", "_", name)
    return re.sub(r"[%\"']", "", name) or "agent"


# ------------------------------------------------------------------------ a run's record

RECORD_TAG = "twrl.record_sha256"  # the digest of a finished run's config and curve
VERSIONS_TAG = "twrl.versions"  # the packages a run was made with (JSON)
VERSIONED = ("twrl-exp", "torch", "numpy", "gymnasium", "mlflow")


def versions() -> dict[str, str]:
    """This process's Python and the versions of the packages whose change can change a run's
    numbers (:data:`VERSIONED`)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "?"
    return found


def curve_digest(returns: Sequence[tuple[int, float]], lengths: Sequence[tuple[int, float]]) -> str:
    """sha256 of a run's episodes: its ``(env step, return)`` and ``(env step, length)`` pairs,
    as MLflow stores them (float64), in order of step then value (episodes that end at one step
    have no other order in the store), each value written exactly (``float.hex``)."""
    text = "\n".join(
        f"{name} {int(step)} {float(value).hex()}"
        for name, pairs in (("return", returns), ("length", lengths))
        for step, value in sorted((int(s), float(v)) for s, v in pairs)
    )
    return hashlib.sha256(text.encode()).hexdigest()


def record_digest(
    config_yaml: str,
    returns: Sequence[tuple[int, float]],
    lengths: Sequence[tuple[int, float]],
) -> str:
    """sha256 of a run's record as it ended: its logged config and its episodes
    (:func:`curve_digest`). Taken when the run ends (tag :data:`RECORD_TAG`); ``twrl-certify``
    takes it again from the store and refuses a record that no longer matches."""
    inner = curve_digest(returns, lengths)
    return hashlib.sha256(f"{config_yaml}\n{inner}".encode()).hexdigest()
