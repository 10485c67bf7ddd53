"""The env loop: a vector env stepping an agent, reporting to monitors. No tracking imports.

Gymnasium's next-step autoreset is handled here once: after env ``n`` ends an episode, its next
step is a reset whose action is ignored and whose reward and flags are meaningless; the runner
marks it ``episode_start`` so no update learns from that phantom transition and no clock counts
it. The run's clock is the agent's (:class:`~twrl_exp.protocols.Clock`); :class:`History`
mirrors its counts. The envs are seeded from the run's seed tree (:mod:`twrl_exp.seeding`):
the training env at the start and at every resume, the evaluation env at its first evaluation
after either.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

import numpy as np
import torch

from twrl_exp import seeding
from twrl_exp.agent import Agent
from twrl_exp.errors import ConfigError, DivergedError


class Monitor(Protocol):
    """What observes a run. Every method is called from the training loop's thread."""

    def start(self, runner: Runner) -> None: ...
    def episodes(self, runner: Runner, first: int) -> None: ...
    def update(self, runner: Runner, metrics: dict[str, float]) -> None: ...
    def evaluation(self, runner: Runner, returns: np.ndarray) -> None: ...
    def tick(self, runner: Runner) -> None: ...
    def trained(self, runner: Runner) -> None: ...
    def finish(self, runner: Runner, status: str) -> None: ...


class MonitorBase:
    """No-op implementations, so a monitor only writes the events it cares about."""

    def start(self, runner: Runner) -> None:
        del runner

    def episodes(self, runner: Runner, first: int) -> None:
        del runner, first

    def update(self, runner: Runner, metrics: dict[str, float]) -> None:
        del runner, metrics

    def evaluation(self, runner: Runner, returns: np.ndarray) -> None:
        del runner, returns

    def tick(self, runner: Runner) -> None:
        del runner

    def trained(self, runner: Runner) -> None:
        """Training is over and its parameters are finite (the final evaluation comes next)."""
        del runner

    def finish(self, runner: Runner, status: str) -> None:
        del runner, status


@dataclass
class History:
    """Everything a run has measured so far; what a checkpoint saves besides the agent."""

    env_steps: int = 0
    updates: int = 0  # learner calls
    gradient_steps: int = 0
    train_time: float = 0.0
    eval_time: float = 0.0
    resumes: int = 0
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    end_steps: list[int] = field(default_factory=list)
    end_times: list[float] = field(default_factory=list)
    trailing: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_means: list[float] = field(default_factory=list)
    eval_stds: list[float] = field(default_factory=list)
    solved_episode: int | None = None
    solved_step: int | None = None
    solved_time: float | None = None

    @property
    def episodes(self) -> int:
        return len(self.returns)

    def as_dict(self) -> dict[str, Any]:
        """Its fields as they are, lists not copied (``dataclasses.asdict`` deep-copies them
        number by number: at a million steps, most of a checkpoint's cost)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def summary(self, window: int) -> dict[str, float]:
        """Leaderboard figures: best ``window``-episode mean, episodes/steps/time to solve."""
        full = self.trailing[window - 1 :] if self.episodes >= window else self.trailing[-1:]
        out: dict[str, float] = {
            "env_steps": float(self.env_steps),
            "episodes": float(self.episodes),
            "train_time_s": self.train_time,
            "eval_time_s": self.eval_time,
            "best_mean_return": max(full) if full else float("nan"),
            "final_mean_return": self.trailing[-1] if self.trailing else float("nan"),
        }
        if self.eval_means:
            out["final_eval_mean_return"] = self.eval_means[-1]
            out["best_eval_mean_return"] = max(self.eval_means)
        if self.solved_episode is not None:
            out["episodes_to_solve"] = float(self.solved_episode)
            out["env_steps_to_solve"] = float(self.solved_step or 0)
            out["time_to_solve_s"] = float(self.solved_time or 0.0)
        return out


@dataclass
class _Loop:
    """The training loop's state between two vector steps."""

    actions: np.ndarray
    ep_return: np.ndarray
    ep_length: np.ndarray
    episode_start: np.ndarray
    next_eval: int | None
    next_check: int
    last_tick: float  # wall-clock times (time.perf_counter)
    last_check: float
    clock: float  # since when the wall time is not yet counted in ``history.train_time``


NUMPY_FLOATS = frozenset({torch.float16, torch.float32, torch.float64})


def nonfinite_entry(state: Any, prefix: str = "") -> str | None:
    """The first key of a (nested) state dict whose tensor/array/float is not finite, or None."""
    if isinstance(state, dict):
        for key, value in state.items():
            found = nonfinite_entry(value, f"{prefix}.{key}" if prefix else str(key))
            if found is not None:
                return found
        return None
    if isinstance(state, list | tuple):
        for index, value in enumerate(state):
            found = nonfinite_entry(value, f"{prefix}[{index}]")
            if found is not None:
                return found
        return None
    if isinstance(state, torch.Tensor):
        if not state.is_floating_point():
            ok = True
        elif state.device.type == "cpu" and state.dtype in NUMPY_FLOATS:
            # numpy's check of a CPU tensor's memory costs a fifth of torch's per-call overhead
            ok = bool(np.isfinite(state.detach().numpy()).all())
        else:
            ok = bool(torch.isfinite(state).all())
    elif isinstance(state, np.ndarray):
        ok = state.dtype.kind not in "fc" or bool(np.isfinite(state).all())
    elif isinstance(state, float):
        ok = math.isfinite(state)
    else:
        ok = True
    return None if ok else prefix


class Runner:
    """Runs ``agent`` on ``env`` until a budget is spent, evaluating greedily on ``eval_env``.

    Finite or fail: a non-finite update metric (loss, gradient norm, ...), episode return or
    agent parameter stops the run with :class:`DivergedError` naming where it diverged and the
    env step of the last finite checkpoint a monitor saved (its ``saved_step``), if any.
    Metrics are checked at every update and returns at every episode's end; parameters every
    ``finite_check_every`` vector steps (``num_envs`` env steps each), at least every
    ``finite_check_seconds``, and before every checkpoint: a run does not go on far with NaN
    weights, even where its update reports no metrics (TD(lambda)'s).
    """

    def __init__(
        self,
        *,
        env: Any,
        agent: Agent[Any],
        seed: int,
        monitors: list[Monitor] | None = None,
        eval_env: Any = None,
        max_env_steps: int | None = None,
        max_episodes: int | None = None,
        stop_when_solved: bool = False,
        reward_threshold: float | None = None,
        solve_window: int = 100,
        eval_every_steps: int | None = None,
        eval_episodes: int = 10,
        eval_deterministic: bool = True,
        final_eval: bool = True,
        tick_seconds: float = 0.2,
        finite_check_seconds: float = 1.0,
        finite_check_every: int = 1000,
    ) -> None:
        if max_env_steps is None and max_episodes is None:
            raise ConfigError(
                "The run has no budget: set train.max_env_steps or train.max_episodes."
            )
        if stop_when_solved and reward_threshold is None:
            raise ConfigError(
                "train.stop_when_solved=true needs a reward threshold, and this env has none: "
                "set env.reward_threshold."
            )
        self.env, self.agent, self.eval_env = env, agent, eval_env
        self.num_envs = env.num_envs
        self.seed = seed
        self.monitors = list(monitors or [])
        self.max_env_steps, self.max_episodes = max_env_steps, max_episodes
        self.stop_when_solved, self.reward_threshold = stop_when_solved, reward_threshold
        self.solve_window = solve_window
        self.eval_every_steps = eval_every_steps if eval_env is not None else None
        # What an evaluation's actions are, for labels: "greedy" unless the policy says otherwise.
        default_label = "greedy" if eval_deterministic else "sampled actions"
        self.eval_label: str = getattr(agent.policy, "evaluation", default_label)
        self.eval_episodes, self.final_eval = eval_episodes, final_eval and eval_env is not None
        self.eval_deterministic = eval_deterministic
        self.tick_seconds = tick_seconds
        self.finite_check_seconds = finite_check_seconds
        self.finite_check_every = finite_check_every
        # Set when the run diverges: from then on its state is neither saved nor published,
        # even where a non-finite loss left the parameters finite.
        self.diverged = False
        self.history = History()
        # Set (e.g. by a SIGINT handler) to stop at the next step boundary with KeyboardInterrupt,
        # so an interruption never lands inside a metric write or a checkpoint.
        self.stop_requested = False
        # Set by a monitor (e.g. a pruner) to end the run early but normally, with a reason.
        self.stop_reason: str | None = None
        self._eval_seeded = False
        self._returns_cumsum = [0.0]

    # ------------------------------------------------------------------ loop

    def run(self) -> dict[str, float]:
        """Train until the budget is spent (or solved); return the summary figures."""
        # Overflow is reported by the finiteness checks, in one sentence, not as warnings.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self._run()

    def _run(self) -> dict[str, float]:
        self.begin()
        while not self._budget_spent():
            self.after_step(self.act_step())
        return self.end()

    # A run's loop in three parts, so that a population (:mod:`twrl_exp.population`) can step
    # its members' runners in lockstep and learn for all of them between the two halves of a
    # vector step: ``begin``; ``act_step`` then ``after_step`` until ``spent``; ``end``.

    def begin(self) -> None:
        """Start the monitors, reset the training env (from the seed tree) and decide the first
        actions."""
        for monitor in self.monitors:
            monitor.start(self)
        obs, _ = self.env.reset(
            seed=seeding.integer(self.seed, seeding.Stream.ENV, self.history.resumes)
        )
        # The first decision is training time too: it may compile kernels (update.backend=numba).
        now = time.perf_counter()
        self._loop = _Loop(
            actions=self.agent.start(obs),
            ep_return=np.zeros(self.num_envs),
            ep_length=np.zeros(self.num_envs, np.int64),
            episode_start=np.zeros(self.num_envs, bool),
            next_eval=self._next_eval_step(),
            next_check=self.finite_check_every,
            last_tick=now,
            last_check=now,
            clock=now,
        )

    def spent(self) -> bool:
        """Whether the budget is spent (or the run solved, or stopped early)."""
        return self._budget_spent()

    def act_step(self) -> dict[str, float] | None:
        """One vector step: the envs step, the agent learns from the transition and decides
        the next actions, ended episodes are recorded. Returns the learner's metrics, if any."""
        h, loop = self.history, self._loop
        if self.stop_requested:
            h.train_time += time.perf_counter() - loop.clock
            raise KeyboardInterrupt
        obs, reward, terminated, truncated, _ = self.env.step(loop.actions)
        episode_start = loop.episode_start
        live = ~episode_start
        ep_return, ep_length = loop.ep_return, loop.ep_length
        ep_return += reward * live
        ep_length += live
        steps_before = h.env_steps
        loop.actions, metrics = self.agent.step(obs, reward, terminated, truncated, episode_start)
        counts = self.agent.clock  # the run's clock; ``loop.clock`` is the wall clock
        h.env_steps, h.updates = counts.env_steps, counts.updates
        h.gradient_steps = counts.gradient_steps
        episode_start = loop.episode_start = terminated | truncated
        if np.count_nonzero(episode_start):  # (ndarray.any() costs several times more)
            # Each episode ends at a distinct env-step count: envs are counted in order.
            end_steps = steps_before + live.cumsum()[episode_start]
            self._record_episodes(
                ep_return[episode_start], ep_length[episode_start], end_steps, loop.clock
            )
            ep_return[episode_start] = 0.0
            ep_length[episode_start] = 0
        return metrics

    def decide_again(self) -> None:
        """After a population has learned for this member: its next actions, by the policy it
        just learned, where its rule acts after learning (``Agent.decide_again``)."""
        if self.agent.acts_after_learning:
            self._loop.actions = self.agent.decide_again()

    def after_step(self, metrics: dict[str, float] | None) -> None:
        """The rest of a vector step: the learner's ``metrics`` checked and reported, the
        periodic finiteness check, the monitors' tick, a due evaluation."""
        h, loop = self.history, self._loop
        if metrics is not None:
            self._check_metrics(metrics)
            for monitor in self.monitors:
                monitor.update(self, metrics)
        loop.next_check -= 1
        if not loop.next_check:  # 5-200 us, every 1000 vector steps: under 0.5% of the loop
            self.check_parameters()
            loop.next_check = self.finite_check_every
        now = time.perf_counter()
        if now - loop.last_tick >= self.tick_seconds:
            # Monitor work (progress, metric flushes, checkpoints) counts as training time.
            h.train_time += now - loop.clock
            loop.clock = loop.last_tick = now
            if now - loop.last_check >= self.finite_check_seconds:
                loop.last_check = now
                self.check_parameters()
            for monitor in self.monitors:
                monitor.tick(self)
        if loop.next_eval is not None and h.env_steps >= loop.next_eval:
            h.train_time += time.perf_counter() - loop.clock
            self.evaluate()
            loop.next_eval = self._next_eval_step()
            loop.clock = time.perf_counter()

    def end(self) -> dict[str, float]:
        """Training is over: the last finiteness check, the monitors told, the final
        evaluation; the summary figures."""
        h = self.history
        h.train_time += time.perf_counter() - self._loop.clock
        self.check_parameters()
        for monitor in self.monitors:
            trained = getattr(monitor, "trained", None)  # not in monitors written before it
            if trained is not None:
                trained(self)
        stopped_early = self.stop_reason is not None
        if (
            self.final_eval
            and not stopped_early
            and (not h.eval_steps or h.eval_steps[-1] != h.env_steps)
        ):
            self.evaluate()
        return h.summary(self.solve_window)

    # ------------------------------------------------------------------ finite or fail

    def _diverged(self, what: str, *, when: str = "at") -> DivergedError:
        self.diverged = True
        saved = [getattr(m, "saved_step", None) for m in self.monitors]
        steps = [s for s in saved if isinstance(s, int)]
        kept = (
            f"keeps its last finite checkpoint, from env step {max(steps):,}"
            if steps
            else "keeps no checkpoint, since none was saved before then"
        )
        return DivergedError(
            f"The run diverged {when} env step {self.history.env_steps:,}: {what}; it is marked "
            f"FAILED and {kept} (a smaller learning rate or step size usually helps)."
        )

    def _check_metrics(self, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            if not math.isfinite(value):
                raise self._diverged(f"update/{key} is {value}")

    def check_parameters(self) -> None:
        """Raise :class:`DivergedError` if any parameter or learner state is not finite."""
        where = nonfinite_entry(self.agent.learned_state())
        if where is not None:  # "by": it went non-finite at some step since the last check
            raise self._diverged(f"the agent's {where} is not finite", when="by")

    def parameters_finite(self) -> bool:
        """Whether the agent's state may be saved or published: the run has not diverged and
        every parameter is finite."""
        return not self.diverged and nonfinite_entry(self.agent.learned_state()) is None

    def _budget_spent(self) -> bool:
        h = self.history
        if self.max_env_steps is not None and h.env_steps >= self.max_env_steps:
            return True
        if self.max_episodes is not None and h.episodes >= self.max_episodes:
            return True
        if self.stop_reason is not None:
            return True
        return self.stop_when_solved and h.solved_episode is not None

    def _next_eval_step(self) -> int | None:
        if not self.eval_every_steps:
            return None
        return (self.history.env_steps // self.eval_every_steps + 1) * self.eval_every_steps

    def _record_episodes(
        self, returns: np.ndarray, lengths: np.ndarray, end_steps: np.ndarray, clock: float
    ) -> None:
        h = self.history
        if not np.isfinite(returns).all():
            raise self._diverged(f"an episode return is {returns[~np.isfinite(returns)][0]}")
        first = h.episodes
        elapsed = h.train_time + time.perf_counter() - clock
        window = self.solve_window
        for ret, length, step in zip(
            returns.tolist(), lengths.tolist(), end_steps.tolist(), strict=True
        ):
            h.returns.append(ret)
            h.lengths.append(length)
            h.end_steps.append(step)
            h.end_times.append(elapsed)
            self._returns_cumsum.append(self._returns_cumsum[-1] + ret)
            k = h.episodes
            span = min(k, window)
            mean = (self._returns_cumsum[k] - self._returns_cumsum[k - span]) / span
            h.trailing.append(mean)
            if (
                h.solved_episode is None
                and self.reward_threshold is not None
                and k >= window
                and mean >= self.reward_threshold
            ):
                h.solved_episode, h.solved_step, h.solved_time = k, step, elapsed
        for monitor in self.monitors:
            monitor.episodes(self, first)

    # ------------------------------------------------------------------ evaluation

    def evaluate(self) -> np.ndarray:
        """Returns of ``eval_episodes`` episodes (greedy, or sampled with
        ``eval_deterministic=False``), spread evenly over the eval envs."""
        started = time.perf_counter()
        env = self.eval_env
        n = env.num_envs
        quota = np.full(n, self.eval_episodes // n)
        quota[: self.eval_episodes % n] += 1
        seed = None  # after the first evaluation, the env's own generator goes on
        if not self._eval_seeded:
            seed = seeding.integer(self.seed, seeding.Stream.EVAL_ENV, self.history.resumes)
            self._eval_seeded = True
        obs, _ = env.reset(seed=seed)
        done_count = np.zeros(n, np.int64)
        ep_return = np.zeros(n)
        returns: list[float] = []
        episode_start = np.zeros(n, bool)
        while (done_count < quota).any():
            if self.stop_requested:
                raise KeyboardInterrupt
            actions = self.agent.act(obs, greedy=self.eval_deterministic)
            obs, reward, terminated, truncated, _ = env.step(actions)
            ep_return += reward * ~episode_start
            episode_start = terminated | truncated
            for i in np.flatnonzero(episode_start & (done_count < quota)):
                returns.append(float(ep_return[i]))
                done_count[i] += 1
            ep_return[episode_start] = 0.0
        result = np.asarray(returns)
        h = self.history
        h.eval_steps.append(h.env_steps)
        h.eval_means.append(float(result.mean()))
        h.eval_stds.append(float(result.std()))
        h.eval_time += time.perf_counter() - started
        for monitor in self.monitors:
            monitor.evaluation(self, result)
        return result

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """The history and the agent's whole state (weights, learner, storage, RNGs)."""
        history = {
            k: list(v) if isinstance(v, list) else v for k, v in self.history.as_dict().items()
        }
        return {"history": history, "agent": self.agent.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        h = self.history = History(**state["history"])
        h.resumes += 1
        self._returns_cumsum = [0.0, *np.cumsum(h.returns).tolist()]
        self.agent.load_state_dict(state["agent"])
        if "clock" not in state["agent"]:  # saved before the agent kept the clock
            clock = self.agent.clock
            clock.env_steps, clock.episodes, clock.updates = h.env_steps, h.episodes, h.updates
