"""Writes rliable_reference.json: rliable's own figures on fixed synthetic scores, the reference
that tests/unit/test_compare_stats.py checks twrl_exp.compare.stats against.

Run by hand where rliable is installed (it is not a dependency: rliable 1.2.0 pins arch < 8,
whose 7.x releases fail to import with current pandas; this file was made with arch 8.0.0,
patched below for the one keyword arch 8 renamed):

    pip install rliable==1.2.0 arch==8.0.0 && python tests/data/rliable_reference.py
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import arch.bootstrap as arch_bs
import numpy as np
from rliable import library as rly
from rliable import metrics

# arch 8 no longer takes IIDBootstrap(random_state=...), which rliable 1.2.0 passes; rliable's
# strata resample with numpy's global generator anyway (seeded below).
_iid_init = arch_bs.IIDBootstrap.__init__


def _init(self, *args, random_state=None, **kwargs):
    del random_state
    _iid_init(self, *args, **kwargs)


arch_bs.IIDBootstrap.__init__ = _init

np.random.seed(0)  # noqa: NPY002 (rliable resamples with numpy's global generator)
rng = np.random.default_rng(20261206)
# Three agents, 10 seeds (runs) x 3 envs (tasks), scores with ties and outliers.
scores = {
    "a": np.round(rng.normal([0.2, 0.5, 0.8], 0.15, size=(10, 3)), 2),
    "b": np.round(rng.normal([0.3, 0.5, 0.9], 0.25, size=(10, 3)), 2),
    "c": np.round(rng.lognormal(-1.0, 0.8, size=(10, 3)), 2),
}
scores["c"][0, 1] = 7.5  # an outlier the IQM must shrug off
thresholds = np.linspace(0.0, 1.5, 16)


def one(f):
    return lambda *x: np.array([f(*x)])


out: dict = {
    "versions": {p: version(p) for p in ("rliable", "arch", "numpy", "scipy")},
    "scores": {k: v.tolist() for k, v in scores.items()},
    "thresholds": thresholds.tolist(),
    "reps": 50000,
    "confidence": 0.95,
}
for name, f in (("iqm", metrics.aggregate_iqm), ("mean", metrics.aggregate_mean)):
    points, intervals = rly.get_interval_estimates(scores, one(f), reps=50000)
    out[name] = {k: [float(points[k][0]), *map(float, intervals[k][:, 0])] for k in scores}
pairs = {"a,b": [scores["a"], scores["b"]], "a,c": [scores["a"], scores["c"]]}
points, intervals = rly.get_interval_estimates(
    pairs, one(metrics.probability_of_improvement), reps=50000,

)  # fmt: skip
out["probability_of_improvement"] = {
    k: [float(points[k][0]), *map(float, intervals[k][:, 0])] for k in pairs
}
profiles, bands = rly.create_performance_profile(
    {k: v for k, v in scores.items()}, thresholds, reps=20000
)
out["profile"] = {
    k: {"point": profiles[k].tolist(), "low": bands[k][0].tolist(), "high": bands[k][1].tolist()}
    for k in scores
}
Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
print("wrote", Path(__file__).with_suffix(".json"))
