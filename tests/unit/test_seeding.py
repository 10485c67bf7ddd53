"""One seed tree: every random stream derived from the run's seed in twrl_exp.seeding, named,
independent, reproducible, and reseeded through the tree on resume."""

from __future__ import annotations

import io
import itertools
import re
import tokenize
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from twrl_exp import seeding
from twrl_exp.build import build, make_runner, project_root
from twrl_exp.errors import ConfigError
from twrl_exp.seeding import Stream

# Arithmetic on a seed, a seed in a list of entropy words, or a seed handed to a generator's
# constructor: how the seed derivations this module replaced looked (seed + 17, [seed, 1_000_003],
# seed + 7919 * resumes, torch.manual_seed(cfg.seed)).
DERIVATIONS = [
    re.compile(r"\b[\w.]*seed\w*\s*[-+*%^/]\s*\w"),
    re.compile(r"\w\s*[-+*%^]\s*[\w.]*\bseed\w*\b"),
    re.compile(r"\[\s*[\w.]*seed\w*\s*,"),
    re.compile(r"\bSeedSequence\b"),
    re.compile(r"manual_seed\(\s*[\w.]*seed\s*\)"),
]


def code_only(source: str) -> str:
    """``source`` with its comments and strings blanked (docstrings may say ``seed + 1``)."""
    lines = source.splitlines(keepends=True)
    starts = list(itertools.accumulate((len(line) for line in lines), initial=0))
    chars = list(source)
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (tokenize.COMMENT, tokenize.STRING):
            begin = starts[token.start[0] - 1] + token.start[1]
            end = starts[token.end[0] - 1] + token.end[1]
            chars[begin:end] = " " * (end - begin)
    return "".join(chars)


def derivations(path: Path) -> list[str]:
    code = code_only(path.read_text())
    return [match.group(0) for pattern in DERIVATIONS for match in pattern.finditer(code)]


def test_no_module_but_seeding_derives_a_seed() -> None:
    src = project_root() / "src"
    files = [p for p in src.rglob("*.py") if p.name != "seeding.py" and "template" not in p.parts]
    assert len(files) > 50
    found = {str(p.relative_to(src)): hits for p in files if (hits := derivations(p))}
    assert found == {}


@pytest.mark.parametrize(
    "line",
    [
        "rng = np.random.default_rng(seed + 17)",
        "eval_rng = np.random.default_rng([seed, 1_000_003])",
        "env.reset(seed=self.seed + 7919 * h.resumes)",
        "seed_cfg.seed = cfg.seed + index",
        "x = 31 + cfg.seed",
        "torch.manual_seed(cfg.seed)",
    ],
)
def test_the_check_finds_each_old_derivation(line: str, tmp_path: Path) -> None:
    path = tmp_path / "planted.py"
    path.write_text(f'"""seed + 1 in a docstring is fine."""\n{line}  # and seed * 2 here\n')
    assert len(derivations(path)) >= 1
    path.write_text(
        '"""seed + 1 in a docstring is fine."""\nseeding.integer(seed, ENV)  # seed+1\n'
    )
    assert derivations(path) == []


def test_streams_are_named_and_stable() -> None:
    assert [s.name for s in Stream] == [
        "ENV",
        "POLICY",
        "EVALUATION",
        "EVAL_ENV",
        "REPLAY",
        "TORCH",
        "VIDEO",
        "SAMPLER",
    ]
    assert [int(s) for s in Stream] == list(range(1, 9))  # logged runs depend on the numbers
    assert seeding.sequence(3, Stream.ENV, 2).spawn_key == (1, 2)
    assert seeding.integer(3, Stream.REPLAY) == seeding.integer(3, Stream.REPLAY)
    draws = seeding.generator(3, Stream.POLICY).random(4)
    np.testing.assert_array_equal(draws, seeding.generator(3, Stream.POLICY).random(4))


def test_no_two_streams_of_any_runs_share_a_seed() -> None:
    """Under the old offsets run 0's replay seed (0 + 17) was run 17's root, and run 7919's first
    env seed was run 0's after one resume; here 500 runs, every stream, 4 keys: all distinct."""
    seeds = [
        seeding.integer(seed, stream, key)
        for seed, stream, key in itertools.product(range(500), Stream, range(4))
    ]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**31 for s in seeds)


def test_named_streams_are_independent() -> None:
    n = 20_000
    draws = {s: seeding.generator(0, s).random(n) for s in Stream}
    draws["next run"] = seeding.generator(1, Stream.POLICY).random(n)  # type: ignore[index]
    series = list(draws.values())
    correlations = np.corrcoef(series)[np.triu_indices(len(series), 1)]
    assert np.abs(correlations).max() < 4 / np.sqrt(n)
    for x in series:
        assert abs(x.mean() - 0.5) < 4 * np.sqrt(1 / 12 / n)


def test_run_seeds_are_the_roots_of_a_trial() -> None:
    assert seeding.run_seeds(5, 3) == [5, 6, 7]
    assert seeding.run_seeds(seeding.MAX_SEED, 1) == [seeding.MAX_SEED]
    with pytest.raises(ConfigError, match=r"trial\.seeds=2"):
        seeding.run_seeds(seeding.MAX_SEED, 2)


# ---------------------------------------------------------------------------- runs


class ResetSpy:
    """A vector env that records the seeds it is reset with."""

    def __init__(self, env: Any) -> None:
        self.env, self.seeds = env, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.env, name)

    def reset(self, *, seed: int | None = None, options: Any = None) -> Any:
        self.seeds.append(seed)
        return self.env.reset(seed=seed, options=options)


DQN = [
    "env=cartpole",
    "env.num_envs=2",
    "update=dqn",
    "update.learning_starts=300",
    "update.batch_size=32",
    "update.train_freq=16",
    "update.gradient_steps=4",
    "policy.exploration_fraction=0.5",
    "monitor=none",
    "eval.episodes=2",
    "eval.every_steps=500",
]


def dqn_run(make_cfg, *overrides: str) -> tuple[Any, Any]:
    cfg = make_cfg(*DQN, *overrides)
    built = build(cfg)
    built.env, built.eval_env = ResetSpy(built.env), ResetSpy(built.eval_env)
    runner = make_runner(cfg, built)
    runner.run()
    return runner, built


def test_the_same_seed_gives_the_same_run_and_another_seed_another(make_cfg) -> None:
    """Env resets, exploration, replay sampling and network initialisation all repeat."""
    first, _ = dqn_run(make_cfg, "seed=4", "train.max_env_steps=1500")
    again, _ = dqn_run(make_cfg, "seed=4", "train.max_env_steps=1500")
    other, _ = dqn_run(make_cfg, "seed=5", "train.max_env_steps=1500")
    assert first.agent.clock.gradient_steps > 100
    assert first.history.returns == again.history.returns
    assert first.history.eval_means == again.history.eval_means
    assert first.history.returns != other.history.returns


def test_a_resumed_run_reseeds_its_envs_through_the_tree(make_cfg) -> None:
    runner, built = dqn_run(make_cfg, "seed=4", "train.max_env_steps=1000")
    state = runner.state_dict()
    cfg = make_cfg(*DQN, "seed=4", "train.max_env_steps=2000")
    resumed_parts = build(cfg)
    resumed_parts.env = ResetSpy(resumed_parts.env)
    resumed_parts.eval_env = ResetSpy(resumed_parts.eval_env)
    resumed = make_runner(cfg, resumed_parts)
    resumed.load_state_dict(state)
    resumed.run()
    env_seeds = [seeding.integer(4, Stream.ENV, k) for k in (0, 1)]
    eval_seeds = [seeding.integer(4, Stream.EVAL_ENV, k) for k in (0, 1)]
    assert [*built.env.seeds, *resumed_parts.env.seeds] == env_seeds
    # An evaluation env is seeded at its first evaluation, then goes on with its own generator.
    assert built.eval_env.seeds == [eval_seeds[0], None]
    assert resumed_parts.eval_env.seeds[0] == eval_seeds[1]
    assert set(resumed_parts.eval_env.seeds[1:]) == {None}
    assert resumed.history.resumes == 1
    assert resumed.agent.clock.env_steps == resumed.history.env_steps >= 2000


def returns_with(make_cfg, *overrides: str) -> list[float]:
    cfg = make_cfg(
        "env=cliffwalking",
        "train.max_env_steps=null",
        "train.max_episodes=25",  # 12k env steps: 24 evaluations in the evaluated run
        "monitor=none",
        *overrides,
    )
    built = build(cfg)
    runner = make_runner(cfg, built)
    runner.run()
    built.close()
    return runner.history.returns


def test_evaluating_does_not_change_what_is_trained(make_cfg) -> None:
    """Greedy evaluation breaks ties at random: it must draw from its own generator."""
    quiet = returns_with(make_cfg, "eval.every_steps=null", "eval.final=false")
    evaluated = returns_with(make_cfg, "eval.every_steps=500", "eval.episodes=3")
    assert len(quiet) > 20
    assert evaluated == quiet
