"""``twrl-certify <run id>`` (``python -m twrl_exp.certify``): rebuild a finished run from its
record, train it again in a fresh process, and say whether it reproduces.

1. **The record is checked first.** When a run ends, the MLflow monitor takes a digest of its
   logged config and of its episodes (returns and lengths at their env steps: the tag
   ``twrl.record_sha256``, :func:`twrl_exp.identity.record_digest`). The digest is taken again
   from the store; a record changed since (an edited config, an added or altered metric) is
   refused in one sentence, exit code 2. (A digest, not a signature: it catches edits, not a
   forger who rewrites the tag too.)
2. **Same package versions** (``twrl.versions`` against this process's): the run is trained
   again with ``python train.py rerun=<id>`` (its logged config and seed; video off) and its
   episodes must be bit-identical: the same returns and lengths at the same env steps
   (:func:`twrl_exp.identity.curve_digest`). On CPU, with the run's thread count, they are.
3. **Other versions, or ``--seeds K``:** bit-identity is not to be expected, so the config is
   trained again with K seeds (``rerun=<id> trial.seeds=K seed=<S>``, seeds the agent has not
   run) and the agent's recorded seeds are compared with them: Welch's t-test at 5% on the
   runs' ``best_mean_return`` must not tell them apart (with one recorded seed: it must lie
   within the range of the K new ones).

The certificate (what was compared, the verdict, this machine, its versions and the run's,
git commits) is logged on the run as ``certificates/certificate-<time>.json``, and its verdict
appended to the run's description. Exit code 0 when the run reproduces, 1 when it does not.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from twrl_exp.errors import ConfigError
from twrl_exp.identity import (
    RECORD_TAG,
    VERSIONS_TAG,
    agent_key,
    curve_digest,
    record_digest,
    versions,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"twrl-certify: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="twrl-certify", description=__doc__.split("\n\n")[0] if __doc__ else "")
    p.add_argument("run_id", help="the finished run to certify")
    p.add_argument("--seeds", type=int, default=None, help="compare statistically over K seeds")
    p.add_argument("--tracking-uri", default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _certify(args)
    except ConfigError as exc:
        print(f"twrl-certify: error: {exc}", file=sys.stderr)
        return 2


def _uri(args: argparse.Namespace) -> str:
    if args.tracking_uri:
        return str(args.tracking_uri)
    from twrl_exp.paths import default_tracking_uri

    return default_tracking_uri()  # $MLFLOW_TRACKING_URI, else the project's store


def episodes(client: Any, run_id: str) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """A run's episodes as the store holds them: ``(step, return)`` and ``(step, length)``."""
    returns = [(m.step, m.value) for m in client.get_metric_history(run_id, "episode/return")]
    lengths = [(m.step, m.value) for m in client.get_metric_history(run_id, "episode/length")]
    return returns, lengths


def check_record(client: Any, run: Any) -> None:
    """ConfigError unless ``run``'s record is what it was when the run ended."""
    from twrl_exp.logged import quiet_downloads

    run_id = run.info.run_id
    recorded = run.data.tags.get(RECORD_TAG)
    if recorded is None:
        raise ConfigError(
            f"run {run_id} has no record digest ({RECORD_TAG}): it ended before runs were "
            "digested, or not normally, so its record cannot be checked; rerun=<id> makes a "
            "run that can be certified."
        )
    quiet_downloads()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, "config.yaml", tmp)
        except Exception as exc:
            raise ConfigError(f"run {run_id} has no logged config.yaml ({exc}).") from exc
        config_yaml = Path(path).read_text()
    returns, lengths = episodes(client, run_id)
    if record_digest(config_yaml, returns, lengths) != recorded:
        raise ConfigError(
            f"the record of run {run_id} was changed after the run ended (its logged config or "
            "its episodes no longer match the digest taken then): refused, no certificate."
        )


def _certify(args: argparse.Namespace) -> int:
    from twrl_exp import store

    uri = _uri(args)
    if args.seeds is not None and args.seeds < 2:
        raise ConfigError(f"--seeds={args.seeds} is invalid: a statistical check needs >= 2.")
    try:
        client = store.open_client(uri)
    except store.StoreError as exc:
        raise ConfigError(str(exc)) from exc
    try:
        run = client.get_run(args.run_id)
    except Exception:
        raise ConfigError(
            f"there is no run {args.run_id} in {store.redact(uri)}: give the id of a finished run "
            "(the leaderboard and MLflow list them)."
        ) from None
    if run.info.status != "FINISHED":
        raise ConfigError(
            f"run {args.run_id} is {run.info.status}: only a FINISHED run can be certified."
        )
    check_record(client, run)
    theirs = json.loads(run.data.tags.get(VERSIONS_TAG, "{}"))
    mine = versions()
    changed = sorted(k for k in mine if theirs.get(k) != mine[k])
    statistical = args.seeds is not None or bool(changed)
    if statistical:
        verdict, details = _statistical(client, run, uri, args.seeds or 5)
    else:
        verdict, details = _exact(client, run, uri)
    certificate = {
        "run_id": args.run_id,
        "verdict": verdict,
        "method": "statistical" if statistical else "bit-exact",
        "details": details,
        "versions": {"run": theirs, "here": mine, "differ": changed},
        "git_commit": {"run": run.data.tags.get("git_commit"), "here": _commit()},
        "machine": {
            "node": platform.node(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "system": platform.platform(),
        },
        "certified_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    _record(client, run, certificate)
    print(f"run {args.run_id}: {verdict}")
    for line in details.get("lines", []):
        print(f"  {line}")
    if changed:
        print(f"  (made with other versions: {', '.join(changed)}; compared statistically)")
    return 0 if verdict.startswith(("reproduced", "consistent")) else 1


def _commit() -> str:
    from twrl_exp.monitor.setup import git_commit

    return git_commit()


def _train(args: list[str], uri: str) -> None:
    from twrl_exp.paths import train_command

    command = train_command()
    with tempfile.TemporaryDirectory(prefix="twrl-certify-") as tmp:
        multirun = "-m" in args
        where = f"hydra.sweep.dir={tmp}/m" if multirun else f"hydra.run.dir={tmp}/run"
        done = subprocess.run(
            [*command, *args, "monitor.video.enabled=false", where],
            env={**os.environ, "MLFLOW_TRACKING_URI": uri},
            stdout=subprocess.DEVNULL,
            check=False,
        )
    if done.returncode != 0:
        raise ConfigError(f"training it again failed (exit code {done.returncode}; see above).")


def _reruns(client: Any, run: Any, before: set[str]) -> list[Any]:
    found = client.search_runs(
        [run.info.experiment_id],
        f"tags.rerun_of = '{run.info.run_id}' and attributes.status = 'FINISHED'",
        max_results=1000,
    )
    return [r for r in found if r.info.run_id not in before]


def _exact(client: Any, run: Any, uri: str) -> tuple[str, dict[str, Any]]:
    before = {r.info.run_id for r in _reruns(client, run, set())}
    _train([f"rerun={run.info.run_id}"], uri)
    (again,) = _reruns(client, run, before)
    original, new = episodes(client, run.info.run_id), episodes(client, again.info.run_id)
    same = curve_digest(*original) == curve_digest(*new)
    lines = [f"rerun {again.info.run_id}: {len(new[0])} episodes against {len(original[0])}"]
    if same:
        lines.append("every episode's return and length at its env step is bit-identical")
        return "reproduced bit-exact", {"rerun": again.info.run_id, "lines": lines}
    first = next(
        (
            k
            for k, (a, b) in enumerate(zip(sorted(original[0]), sorted(new[0]), strict=False))
            if a != b
        ),
        min(len(original[0]), len(new[0])),
    )
    lines.append(f"the episodes differ from episode {first} on (by env step)")
    return "not reproduced", {"rerun": again.info.run_id, "first_difference": first, "lines": lines}


def _statistical(client: Any, run: Any, uri: str, k: int) -> tuple[str, dict[str, Any]]:
    import numpy as np

    from twrl_exp.stats import welch_test

    key = agent_key(run.data.params)
    by_seed: dict[str, Any] = {run.data.params.get("seed", "?"): run}  # one run a seed: reruns
    for other in client.search_runs(  # of a seed (an earlier certificate's) are no new sample
        [run.info.experiment_id], "attributes.status = 'FINISHED'", max_results=5000
    ):
        if "seed" in other.data.params and agent_key(other.data.params) == key:
            by_seed.setdefault(other.data.params["seed"], other)
    same_agent = list(by_seed.values())
    used = {int(r.data.params["seed"]) for r in same_agent if r.data.params["seed"].isdigit()}
    start = max(used, default=-1) + 1
    before = {r.info.run_id for r in _reruns(client, run, set())}
    _train([f"rerun={run.info.run_id}", f"seed={start}", f"trial.seeds={k}"], uri)
    new = [r.data.metrics.get("best_mean_return", np.nan) for r in _reruns(client, run, before)]
    old = [r.data.metrics.get("best_mean_return", np.nan) for r in same_agent]
    lines = [
        f"best_mean_return of {len(old)} recorded seed(s) against {len(new)} new "
        f"(seeds {start}-{start + k - 1})"
    ]
    if len(old) >= 2:
        p = welch_test(old, new)
        lines.append(f"Welch's t-test: p = {p:.4f} (5%: {'consistent' if p >= 0.05 else 'differ'})")
        verdict = "consistent" if p >= 0.05 else "inconsistent"
        return verdict, {"p_value": p, "old": old, "new": new, "lines": lines}
    inside = min(new) <= old[0] <= max(new)
    lines.append(
        f"{old[0]:.2f} {'within' if inside else 'outside'} [{min(new):.2f}, {max(new):.2f}]"
    )
    return ("consistent" if inside else "inconsistent"), {"old": old, "new": new, "lines": lines}


def _record(client: Any, run: Any, certificate: dict[str, Any]) -> None:
    """The certificate as an artifact of the run, and its verdict in the run's description."""
    run_id = run.info.run_id
    stamp = certificate["certified_at"].replace(":", "")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"certificate-{stamp}.json"
        path.write_text(json.dumps(certificate, indent=1, default=str) + "\n")
        client.log_artifact(run_id, str(path), "certificates")
    note = run.data.tags.get("mlflow.note.content", "")
    line = (
        f"Certified {certificate['certified_at']} on {certificate['machine']['node']}: "
        f"{certificate['verdict']} ({certificate['method']})."
    )
    client.set_tag(run_id, "mlflow.note.content", f"{note}\n{line}".strip())


def cli() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    cli()
