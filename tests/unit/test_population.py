"""A population's loop: each member trains as its single run trains (same episodes, same
clock, same parameters within float rounding), its learner stacked with the others'."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from twrl_exp.build import build, make_runner
from twrl_exp.errors import ConfigError
from twrl_exp.population import Member, Population

RULES = {
    # Whole episodes: members hand over batches at different env steps, and wait for each
    # other. Equal within 1e-5 over the run (about 10 updates).
    "reinforce": [
        "update=reinforce",
        "policy=categorical",
        "train.max_env_steps=3000",
        "update.steps_per_batch=200",
        "update.ent_coef=0.01",
    ],
    # 4 PPO updates: "equal within 1e-5 after the first updates". PPO's loss is not smooth (the
    # ratio's clip, target_kl): later, a float-rounding difference can put one sample on the
    # other side of a clip, and the parameters then differ by ~1e-4 (seen here after 8
    # updates at lr 3e-3), as two single runs on two CPUs would.
    "ppo": ["update=ppo", "policy=categorical", "train.max_env_steps=1200"],
    # A2C's loss is smooth: equal within 1e-5 over its whole (short) run, 30 updates.
    "a2c": ["update=a2c", "policy=categorical", "train.max_env_steps=1200"],
    "dqn": [
        "update=dqn",
        "policy=egreedy",
        "train.max_env_steps=3000",
        "update.learning_starts=500",
        "update.gradient_steps=8",
    ],
    # Prioritised replay samples by priorities, the TD errors: a difference of float rounding
    # in one of them can move a stratified draw to the neighbouring transition, after which the
    # runs differ by a minibatch. Equal within 1e-5 over its first learns (3 x 8 steps).
    "dqn-per": [
        "update=dqn",
        "policy=egreedy",
        "train.max_env_steps=1500",
        "update.learning_starts=500",
        "update.gradient_steps=8",
        "update.prioritized=true",
    ],
}
VALUES = [["update.lr=0.001"], ["update.lr=0.003"], ["update.lr=0.0005", "update.gamma=0.95"]]


def configs(make_cfg, rule: str):
    return [
        make_cfg("env=cartpole", *RULES[rule], f"seed={seed}", "monitor=none", *values)
        for seed, values in enumerate(VALUES)
    ]


def single_run(cfg):
    runner = single_runner(cfg)
    runner.run()
    return runner


def member(cfg) -> Member:
    return Member.after_build(single_runner(cfg))


def single_runner(cfg):
    return make_runner(cfg, build(cfg, evaluation=False), eval_every_steps=None)


def learns_served(population: Population) -> list[tuple[list[bool], list[bool]]]:
    """Each stacked learn's members with a batch, and those still training then."""
    served = []
    learn = population.stacked.learn

    def counted(batches, clocks):
        live = [not m.ended for m in population.members]
        served.append(([b is not None for b in batches], live))
        return learn(batches, clocks)

    population.stacked.learn = counted  # type: ignore[method-assign]
    return served


@pytest.mark.parametrize("rule", list(RULES))
def test_each_member_trains_as_its_single_run(make_cfg, rule: str) -> None:
    cfgs = configs(make_cfg, rule)
    singles = [single_run(cfg) for cfg in cfgs]
    population = Population([member(cfg) for cfg in cfgs])
    served = learns_served(population)
    population.run()
    # In step: every stacked learn serves every member still training (DQN's members reach
    # their train_freq at different vector steps, their autoreset steps counting none).
    assert all(with_batch == live for with_batch, live in served), served
    assert sum(all(with_batch) for with_batch, _ in served) > 2
    for single, mine in zip(singles, population.members, strict=True):
        assert mine.error is None
        assert mine.history.returns == single.history.returns  # the same episodes, in order
        assert mine.history.end_steps == single.history.end_steps
        assert mine.history.updates == single.history.updates
        assert mine.summary is not None
        assert mine.agent.clock.state_dict() == single.agent.clock.state_dict()
        assert mine.agent.clock.updates > 2  # it did learn
        for name, value in single.agent.learned_state()["model"].items():
            torch.testing.assert_close(
                mine.agent.learned_state()["model"][name], value, rtol=0, atol=1e-5
            )
    assert len({tuple(m.history.returns) for m in population.members}) == len(cfgs)


@pytest.mark.parametrize("rule", ["ppo", "dqn"])
def test_resumed_members_train_as_their_resumed_single_runs(make_cfg, rule: str) -> None:
    """Members resumed from their checkpoints (``-m resume=<a>,<b>
    hydra/launcher=population``) go on as each resumed alone would: the same episodes, clock
    and parameters (networks, optimiser state, replay buffer, target, RNG streams restored)."""
    import copy

    def cfg(seed: int, steps: int):
        values = VALUES[seed]
        rest = [o for o in RULES[rule] if not o.startswith("train.max_env_steps")]
        return make_cfg("env=cartpole", *rest, f"seed={seed}", "monitor=none", *values,
                        f"train.max_env_steps={steps}")  # fmt: skip

    states = [single_run(cfg(seed, 1000)).state_dict() for seed in range(2)]
    singles = []
    for seed in range(2):
        runner = single_runner(cfg(seed, 2000))
        runner.load_state_dict(copy.deepcopy(states[seed]))
        runner.run()
        singles.append(runner)
    members = []
    for seed in range(2):
        resumed = member(cfg(seed, 2000))
        resumed.runner.load_state_dict(copy.deepcopy(states[seed]))
        members.append(resumed)
    population = Population(members)
    population.run()
    for single, mine in zip(singles, population.members, strict=True):
        assert mine.error is None
        assert mine.history.returns == single.history.returns
        assert mine.agent.clock.state_dict() == single.agent.clock.state_dict()
        assert mine.agent.clock.updates > single.agent.clock.updates / 2 > 0
        for name, value in single.agent.learned_state()["model"].items():
            torch.testing.assert_close(
                mine.agent.learned_state()["model"][name], value, rtol=0, atol=1e-5
            )
    for seed, mine in enumerate(population.members):  # resumed, not begun anew
        before = states[seed]["history"]["returns"]
        assert before
        assert mine.history.returns[: len(before)] == before
        assert mine.history.resumes == 1


OFF_POLICY_VALUES = {
    "sac": [
        ["update.lr=0.001"],
        ["update.lr=0.003", "update.q_lr=0.002", "update.tau=0.01"],
        ["update.lr=0.0005", "update.gamma=0.95", "update.max_grad_norm=0.5"],
    ],
    "td3": [
        ["update.lr=0.001"],
        ["update.lr=0.003", "update.q_lr=0.002", "update.tau=0.01"],
        ["update.target_policy_noise=0.3", "update.gamma=0.95", "update.max_grad_norm=0.5"],
    ],
}


@pytest.mark.parametrize("rule", list(OFF_POLICY_VALUES))
def test_each_off_policy_member_trains_as_its_single_run(make_cfg, rule: str) -> None:
    """SAC and TD3 members (Pendulum: every episode 200 steps, so members learn in step)
    compute what their single runs compute: the same clock and episode ends, returns and every
    network (actor, twin critics, their targets, TD3's actor target) and SAC's temperature
    within float rounding after their first ~200 gradient steps, each with its own values and
    its own torch draws (SAC's sampled actions, TD3's target noise)."""
    small = ["model.hidden_sizes=[32,32]", "update.batch_size=32", "update.learning_starts=100"]
    cfgs = [
        make_cfg("env=pendulum", f"update={rule}", *small, f"seed={seed}", "monitor=none",
                 "train.max_env_steps=300", *values)
        for seed, values in enumerate(OFF_POLICY_VALUES[rule])
    ]  # fmt: skip
    singles = [single_run(cfg) for cfg in cfgs]
    population = Population([member(cfg) for cfg in cfgs])
    served = learns_served(population)
    population.run()
    assert all(with_batch == live for with_batch, live in served), served
    for single, mine in zip(singles, population.members, strict=True):
        assert mine.error is None
        assert mine.history.end_steps == single.history.end_steps
        assert mine.agent.clock.state_dict() == single.agent.clock.state_dict()
        steps = mine.agent.clock.gradient_steps
        assert steps > 190  # learning from env step 100 on, but at the autoreset step
        assert mine.history.returns == pytest.approx(single.history.returns, rel=1e-5)
        own, alone = mine.agent.update.learner.learner, single.agent.update.learner
        pairs = [(own.actor, alone.actor), *zip(own.critics, alone.critics, strict=True)]
        pairs += list(zip(own.critic_targets, alone.critic_targets, strict=True))
        if rule == "td3":
            pairs.append((own.actor_target, alone.actor_target))
        for ours, theirs in pairs:
            for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
                torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        if rule == "sac":
            torch.testing.assert_close(own.log_alpha, alone.log_alpha, rtol=0, atol=1e-5)
            assert own.log_alpha.item() != 0.0  # the temperature was learnt
        states = own.q_optimizer.state_dict()["state"], alone.q_optimizer.state_dict()["state"]
        assert states[0][0]["step"] == states[1][0]["step"] == steps  # its own optimiser state
    actors = [next(m.agent.update.learner.learner.actor.parameters()) for m in population.members]
    assert not torch.equal(actors[0], actors[1])


@pytest.mark.parametrize("rule", list(OFF_POLICY_VALUES))
def test_off_policy_members_with_different_minibatch_counts_or_none_learn_as_alone(
    make_cfg, rule: str
) -> None:
    """One stacked learn where member 0 replays 3 minibatches, member 1 two (a
    ``gradient_steps=-1`` learn counts only the env steps that were not autoreset steps) and
    member 2 none: members 0 and 1 end as their own learners would after the same learn (every
    network, the temperature, all optimiser states, their generators' draws, their metrics),
    member 2 does not move at all. ``policy_delay=2`` (the actor steps every other gradient
    step) and per-member values the structure allows."""
    import copy

    import numpy as np

    from twrl_exp.protocols import Clock
    from twrl_exp.storage import ReplayBatch
    from twrl_exp.update.stacked_off_policy import StackedSAC, StackedTD3

    values = {
        "sac": ["update.target_entropy=-0.5", "update.q_lr=0.002"],
        "td3": ["update.target_noise_clip=0.1", "update.target_policy_noise=0.4"],
    }[rule]
    cfgs = [
        make_cfg("env=pendulum", f"update={rule}", "model.hidden_sizes=[16,16]",
                 "update.policy_delay=2", f"seed={seed}", "monitor=none",
                 *(values if seed == 1 else []))
        for seed in range(3)
    ]  # fmt: skip
    members = [member(cfg) for cfg in cfgs]
    learners = [m.agent.update.learner for m in members]
    alone = [copy.deepcopy(learner) for learner in learners]
    generators = [m.generator for m in members]
    states = [g.get_state() for g in generators]
    stacked = (StackedSAC if rule == "sac" else StackedTD3)(learners, generators)
    rng = np.random.default_rng(0)

    def batch(g: int) -> ReplayBatch:
        obs = rng.normal(size=(g, 32, 3)).astype(np.float32)
        return ReplayBatch(
            obs=obs,
            actions=rng.uniform(-1, 1, (g, 32, 1)).astype(np.float32),
            rewards=rng.normal(size=(g, 32)).astype(np.float32),
            discounts=np.full((g, 32), 0.99, np.float32),
            next_obs=(obs + 0.1).astype(np.float32),
        )

    batches = [batch(3), batch(2), None]
    clocks = [Clock(env_steps=1000, gradient_steps=5) for _ in range(3)]
    metrics = stacked.learn(batches, clocks)
    stacked.write_back(with_state=True)
    for m in (0, 1):
        torch.set_rng_state(states[m])
        clock = Clock(env_steps=1000, gradient_steps=5)
        expected = alone[m].learn(batches[m], clock)
        assert clock.state_dict() == clocks[m].state_dict()
        assert metrics[m] == pytest.approx(expected, rel=1e-5, abs=1e-6)
        assert torch.equal(generators[m].get_state(), torch.get_rng_state())
        nets = [(learners[m].actor, alone[m].actor)]
        nets += list(zip(learners[m].critics, alone[m].critics, strict=True))
        nets += list(zip(learners[m].critic_targets, alone[m].critic_targets, strict=True))
        if rule == "td3":
            nets.append((learners[m].actor_target, alone[m].actor_target))
        for ours, theirs in nets:
            for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
                torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        optimisers = ["q_optimizer", "actor_optimizer"]
        if rule == "sac":
            optimisers.append("alpha_optimizer")
            torch.testing.assert_close(learners[m].log_alpha, alone[m].log_alpha)
        for name in optimisers:
            ours_state = getattr(learners[m], name).state_dict()["state"]
            theirs_state = getattr(alone[m], name).state_dict()["state"]
            assert ours_state.keys() == theirs_state.keys(), name
            for key, entry in theirs_state.items():
                for field, value in entry.items():
                    torch.testing.assert_close(ours_state[key][field], value, rtol=0, atol=1e-6)
    assert metrics[2] is None
    assert clocks[2].gradient_steps == 5
    assert torch.equal(generators[2].get_state(), states[2])
    for ours, theirs in zip(
        learners[2].actor.parameters(), alone[2].actor.parameters(), strict=True
    ):
        assert torch.equal(ours, theirs)
    assert not learners[2].q_optimizer.state  # never stepped


def test_members_of_another_rule_are_refused_in_one_sentence(make_cfg) -> None:
    cfg = make_cfg("update=none", "policy=random", "train.max_env_steps=1000", "monitor=none")
    with pytest.raises(
        ConfigError,
        match=r"update=reinforce, ppo, a2c, dqn, sac, td3 or td_lambda members, not "
        r"\['NoLearning'\]",
    ):
        Population([member(cfg)])


TD_RULES = {
    # Tile-coded Sarsa(lambda) on MountainCar, compiled backend where numba is installed.
    "tilecoding": ["env=mountaincar", "model=tilecoding", "train.max_env_steps=4000"],
    # Tabular Q(lambda) on CliffWalking, numpy backend.
    "table": [
        "env=cliffwalking",
        "model=table",
        "update.target=q_learning",
        "update.backend=numpy",
        "train.max_env_steps=3000",
    ],
}


@pytest.mark.parametrize("model", list(TD_RULES))
def test_each_td_lambda_member_is_bit_identical_to_its_single_run(make_cfg, model: str) -> None:
    """An alpha x lambda grid of TD(lambda) members (float64): every member's episodes, clock
    and weights are its single run's, bit for bit."""
    base = [*TD_RULES[model], "update=td_lambda", "policy=egreedy", "monitor=none"]
    cfgs = [
        make_cfg(*base, f"seed={seed}", f"update.alpha={alpha}", f"update.lam={lam}")
        for seed, (alpha, lam) in enumerate([(0.5, 0.9), (0.3, 0.0), (0.1, 0.95)])
    ]
    singles = [single_run(cfg) for cfg in cfgs]
    population = Population([member(cfg) for cfg in cfgs])
    order: list[int] = []  # the member of each learn
    for m, deferred in enumerate(population.deferred):
        learn = deferred.learner.learn

        def counted(batch, clock, m=m, learn=learn):
            order.append(m)
            return learn(batch, clock)

        deferred.learner.learn = counted
    population.run()
    # In turn: each member trains from start to end before the next begins (their learns
    # share no computation; interleaved, their tables would leave the cache).
    assert order == sorted(order)
    assert set(order) == {0, 1, 2}
    for single, mine in zip(singles, population.members, strict=True):
        assert mine.error is None
        assert mine.summary is not None
        assert mine.history.returns == single.history.returns
        assert mine.history.end_steps == single.history.end_steps
        assert mine.agent.clock.state_dict() == single.agent.clock.state_dict()
        assert mine.agent.clock.gradient_steps > 1000
        mine_weights = mine.agent.update.learner.learner.model.weights
        single_weights = single.agent.update.learner.model.weights
        assert mine_weights.dtype == np.float64
        assert np.array_equal(mine_weights, single_weights)
    learned = {m.agent.update.learner.learner.model.weights.tobytes() for m in population.members}
    assert len(learned) == len(cfgs)  # each learned its own


def test_members_a_population_cannot_stack_train_one_by_one_as_their_single_runs(
    make_cfg, tmp_path
) -> None:
    """train_population's safety net: jobs whose learners cannot be stacked (here two rollout
    lengths) run one after the other, each exactly its single run."""
    from twrl_exp.train import PopulationJob, train_population

    cfgs = [
        make_cfg(
            "env=cartpole",
            "update=ppo",
            f"update.n_steps={n}",
            f"seed={n}",
            "monitor=none",
            "train.max_env_steps=1500",
            "eval.every_steps=null",
            "eval.final=false",
        )
        for n in (16, 32)
    ]
    jobs = [PopulationJob(cfg, tmp_path / str(i), []) for i, cfg in enumerate(cfgs)]
    values = train_population(jobs)
    singles = [single_run(cfg) for cfg in cfgs]
    assert values == [s.history.summary(100)["best_mean_return"] for s in singles]


def test_a_refilled_ppo_slot_learns_in_step_with_the_others(make_cfg) -> None:
    """Member 0 is stopped (as a pruner stops it) after 300 env steps and a new run takes its
    slot: it begins at once and the other member, holding its rollout, waits for the
    newcomer's first one, so every stacked learn serves both slots (out of step, each member's
    rollout would make a learn of its own), and it trains as its single run."""
    from twrl_exp.runner import MonitorBase

    class StopAt(MonitorBase):  # at an episode's end, between two learns
        def episodes(self, runner, first) -> None:
            if runner.history.env_steps >= 300:
                runner.stop_reason = "pruned"

    base = ["env=cartpole", "update=ppo", "monitor=none", "eval.every_steps=null"]
    cfgs = [
        make_cfg(*base, f"seed={seed}", "train.max_env_steps=3000", "eval.final=false")
        for seed in range(3)
    ]
    first = member(cfgs[0])
    first.runner.monitors.append(StopAt())
    population = Population([first, member(cfgs[1])])
    calls = []
    learn = population.stacked.learn

    def counted(batches, clocks):
        calls.append([b is not None for b in batches])
        return learn(batches, clocks)

    population.stacked.learn = counted
    given = []

    def on_end(slot, ended):
        if given or ended is not first:
            return None
        given.append(member(cfgs[2]))
        return given[0]

    population.run(on_end)
    newcomer = given[0]
    assert newcomer.error is None
    assert newcomer.history.env_steps >= 3000
    alone = [c for c in calls if not all(c)]
    # In step: only the other member's last learns (while the newcomer waited, and after the
    # other's budget) are its alone, never one learn per member per rollout.
    assert len(alone) <= 5, calls
    single = single_run(cfgs[2]).history
    early = [r for r, step in zip(single.returns, single.end_steps, strict=True) if step < 1000]
    assert newcomer.history.returns[: len(early)] == early  # its first 4 updates' episodes


@pytest.mark.parametrize(("threads", "omp"), [(None, None), (None, "3"), (4, "3")])
def test_a_population_trains_with_its_own_threads_and_gives_them_back(
    make_cfg, tmp_path, monkeypatch, threads: int | None, omp: str | None
) -> None:
    """A population's batched matmuls share cores (``trial.population_threads``; null:
    $OMP_NUM_THREADS where set, as Ray sets it for a task, else every usable core) while a
    single run keeps ``torch_threads``: every learn of the population runs with them, those
    after a slot is refilled (building the new run sets its own torch_threads) included, and
    torch's setting is given back after it."""
    import os

    from twrl_exp import population as population_module
    from twrl_exp.train import PopulationJob, train_population

    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    seen: list[tuple[int, bool]] = []
    real_learn = population_module.Population._learn

    def learn(self):  # the real learn, noting the threads it runs with and whether it follows
        seen.append((torch.get_num_threads(), not refills))  # the refill
        return real_learn(self)

    monkeypatch.setattr(population_module.Population, "_learn", learn)
    overrides = ["env=cartpole", "update=ppo", "monitor=none", "eval.every_steps=null"]
    overrides += ["eval.final=false", "trial.seeds=2"]
    if threads is not None:
        overrides.append(f"trial.population_threads={threads}")
    overrides.append("train.max_env_steps=300")
    refill_cfg = make_cfg(*overrides, "trial.seeds=1", "seed=7")
    refills = [PopulationJob(refill_cfg, tmp_path / "refill", [])]
    before = torch.get_num_threads()
    train_population(
        [PopulationJob(make_cfg(*overrides), tmp_path, [])],
        refill=lambda: refills.pop() if refills else None,
    )
    expected = threads or (int(omp) if omp else len(os.sched_getaffinity(0)))
    assert not refills  # the refill took a slot, and learnt after it
    assert {after for _, after in seen} == {False, True}  # learns before and after the refill
    assert {threads for threads, _ in seen} == {expected}
    assert torch.get_num_threads() == before


def test_population_threads_below_one_are_refused_in_one_sentence(make_cfg) -> None:
    from twrl_exp.build import check_run_config

    expected = r"^trial.population_threads=0 is invalid: it must be > 0"
    with pytest.raises(ConfigError, match=expected):
        check_run_config(make_cfg("update=ppo", "trial.population_threads=0"))
