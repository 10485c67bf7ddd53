"""A trial whose sweep died before launching it is lost: the dead sweep is a real process that
ended."""

from __future__ import annotations

from optuna.trial import TrialState


def test_a_trial_whose_sweep_died_before_launching_it_is_lost(tmp_path) -> None:
    """A sweep killed between asking for a trial and launching its job leaves a RUNNING trial
    with no job process: it belongs to the dead sweep, so the next sweep fails it as lost (on
    this host at once; a sweep on another host after the grace period)."""
    import subprocess
    import sys

    import optuna

    from hydra_plugins.twrl_optuna_sweeper._sweeper import SWEEP_ATTR, fail_lost_trials
    from hydra_plugins.twrl_optuna_sweeper._trial import open_storage, quiet_optuna
    from twrl_exp import processes

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = processes.identity(dead.pid)
    dead.wait()
    with quiet_optuna():
        study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 's.db'}"))
        orphan, elsewhere, mine = study.ask(), study.ask(), study.ask()
        orphan.set_user_attr(SWEEP_ATTR, identity)
        elsewhere.set_user_attr(SWEEP_ATTR, "another-host:123@1.00")
        mine.set_user_attr(SWEEP_ATTR, processes.identity())
        assert fail_lost_trials(study, heartbeats=False, grace_period=3600) == 1
        assert fail_lost_trials(study, heartbeats=False, grace_period=0) == 1  # elsewhere, old
        states = {t.number: t.state for t in study.get_trials()}
    assert states == {0: TrialState.FAIL, 1: TrialState.FAIL, 2: TrialState.RUNNING}
