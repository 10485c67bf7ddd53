"""The actor-critics' value estimators (``update.value_estimator``): GAE as it was, and V-trace
(Espeholt et al. 2018) against a brute-force reading of its definition, with the same episode
semantics (termination does not bootstrap, truncation and the rollout's cut do). In-process."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from twrl_exp.config import make
from twrl_exp.errors import ConfigError
from twrl_exp.protocols import Clock
from twrl_exp.returns import gae, vtrace
from twrl_exp.storage import RolloutBatch


def rollout(seed: int, steps: int = 9, envs: int = 3) -> dict[str, np.ndarray]:
    """A random ``[T, N]`` rollout with terminations and truncations."""
    rng = np.random.default_rng(seed)
    terminated = rng.random((steps, envs)) < 0.15
    truncated = ~terminated & (rng.random((steps, envs)) < 0.15)
    return {
        "rewards": rng.normal(size=(steps, envs)),
        "values": rng.normal(size=(steps, envs)),
        "next_values": rng.normal(size=(steps, envs)),
        "terminated": terminated,
        "episode_end": terminated | truncated,
        "log_rhos": rng.normal(scale=0.7, size=(steps, envs)),
    }


def brute_vtrace(
    data: dict[str, np.ndarray], gamma: float, lam: float, rho_clip: float, c_clip: float
) -> tuple[np.ndarray, np.ndarray]:
    """Espeholt et al. 2018, eq. 1, term by term: ``v_s = V(x_s) + sum_{t >= s} gamma^{t-s}
    (prod_{s <= i < t} c_i) delta_t`` over the steps of ``s``'s episode left in the rollout; the
    advantage ``rho_s (r_s + gamma v_{s+1} - V(x_s))``, ``v_{s+1} = V(x_{s+1})`` past an end."""
    r, v, nv = data["rewards"], data["values"], data["next_values"]
    term, end = data["terminated"], data["episode_end"]
    ratio = np.exp(data["log_rhos"])
    rho, c = np.minimum(rho_clip, ratio), lam * np.minimum(c_clip, ratio)
    steps, envs = r.shape
    targets, advantages = np.zeros_like(r), np.zeros_like(r)
    for n in range(envs):
        for s in range(steps):
            total, weight = v[s, n], 1.0
            for t in range(s, steps):
                delta = rho[t, n] * (r[t, n] + gamma * (1 - term[t, n]) * nv[t, n] - v[t, n])
                total += gamma ** (t - s) * weight * delta
                if end[t, n]:
                    break
                weight *= c[t, n]
            targets[s, n] = total
    for n in range(envs):
        for s in range(steps):
            last = end[s, n] or s == steps - 1
            following = nv[s, n] if last else targets[s + 1, n]
            q = r[s, n] + gamma * (1 - term[s, n]) * following
            advantages[s, n] = rho[s, n] * (q - v[s, n])
    return advantages, targets


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("lam", [0.0, 0.7, 1.0])
@pytest.mark.parametrize(("rho_clip", "c_clip"), [(1.0, 1.0), (2.0, 0.5)])
def test_vtrace_is_its_definition(seed: int, lam: float, rho_clip: float, c_clip: float) -> None:
    data = rollout(seed)
    args = {k: data[k] for k in ("rewards", "values", "next_values", "terminated", "episode_end")}
    advantages, targets = vtrace(
        **args, gamma=0.9, lam=lam, log_rhos=data["log_rhos"], rho_clip=rho_clip, c_clip=c_clip
    )
    expected_advantages, expected_targets = brute_vtrace(data, 0.9, lam, rho_clip, c_clip)
    np.testing.assert_allclose(targets, expected_targets, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(advantages, expected_advantages, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_on_policy_vtrace_targets_are_gaes_lambda_returns(lam: float) -> None:
    data = rollout(3)
    args = [data[k] for k in ("rewards", "values", "next_values", "terminated", "episode_end")]
    gae_advantages, gae_returns = gae(*args, 0.99, lam)
    advantages, targets = vtrace(*args, 0.99, lam, np.zeros_like(data["rewards"]))
    np.testing.assert_allclose(targets, gae_returns, rtol=1e-12, atol=1e-12)
    # V-trace's advantage bootstraps from the next target (GAE's from the next V): r + gamma
    # G^lambda_{t+1} - V(s_t) within an episode, r + gamma V(s') - V(s_t) at its end.
    r, v, nv, term, end = args
    following = np.where(end, nv, np.concatenate([gae_returns[1:], nv[-1:]]))
    expected = r + 0.99 * (1 - term) * following - v
    np.testing.assert_allclose(advantages, expected, rtol=1e-12, atol=1e-12)
    assert not np.allclose(advantages, gae_advantages)


def test_vtrace_by_hand_termination_truncation_and_the_cut() -> None:
    """One env, gamma 0.5, lambda 1, on-policy: steps 0-1 end by truncation (bootstrap 4 from
    the final observation), step 2 terminates (no bootstrap), step 3 is cut (bootstrap 8)."""
    r = np.array([[1.0], [1.0], [2.0], [1.0]])
    v = np.zeros((4, 1))
    nv = np.array([[0.0], [4.0], [9.0], [8.0]])
    term = np.array([[False], [False], [True], [False]])
    end = np.array([[False], [True], [True], [False]])
    advantages, targets = vtrace(r, v, nv, term, end, 0.5, 1.0, np.zeros((4, 1)))
    # v_1 = 1 + 0.5 * 4 = 3; v_0 = 1 + 0.5 * v_1 = 2.5; v_2 = 2; v_3 = 1 + 0.5 * 8 = 5.
    assert targets.ravel().tolist() == [2.5, 3.0, 2.0, 5.0]
    # A_0 = 1 + 0.5 v_1; A_1 = 1 + 0.5 V(final); A_2 = 2; A_3 = 1 + 0.5 V(cut).
    assert advantages.ravel().tolist() == [2.5, 3.0, 2.0, 5.0]
    # An off-policy step: rho = min(1, e^1) = 1, c = min(1, e^-1) cuts the trace at step 0.
    log_rhos = np.array([[-1.0], [1.0], [0.0], [0.0]])
    advantages, targets = vtrace(r, v, nv, term, end, 0.5, 1.0, log_rhos)
    rho0 = np.exp(-1.0)
    assert targets[1, 0] == 3.0  # clipped at 1
    assert targets[0, 0] == pytest.approx(rho0 * 1.0 + 0.5 * rho0 * (3.0 - 0.0))
    assert advantages[0, 0] == pytest.approx(rho0 * (1.0 + 0.5 * 3.0))


def test_gae_is_unchanged() -> None:
    """Pinned by hand: gamma 0.5, lambda 0.5, V = 1 everywhere, a truncation after step 1
    (final observation worth 2), a termination after step 2, the cut after step 3 (V = 1)."""
    r = np.array([[1.0], [1.0], [1.0], [1.0]])
    v = np.ones((4, 1))
    nv = np.array([[1.0], [2.0], [5.0], [1.0]])
    term = np.array([[False], [False], [True], [False]])
    end = np.array([[False], [True], [True], [False]])
    advantages, returns = gae(r, v, nv, term, end, 0.5, 0.5)
    # deltas: 0.5, 1.0, 0.0, 0.5; A_1 = 1, A_0 = 0.5 + 0.25 * 1.
    assert advantages.ravel().tolist() == [0.75, 1.0, 0.0, 0.5]
    assert returns.ravel().tolist() == [1.75, 2.0, 1.0, 1.5]


# ---------------------------------------------------------------------------- in A2C and PPO


def learner(option: str, estimator: str):
    torch.manual_seed(0)
    obs_space = spaces.Box(-1, 1, (3,), np.float32)
    model = make(
        "model", "mlp", observation_space=obs_space, num_outputs=2, hidden_sizes=[8], output_gain=1
    )

    def make_model(**kwargs):
        return make("model", "mlp", **kwargs)

    return make(
        "update",
        option,
        model=model,
        make_model=make_model,
        policy=make("policy", "categorical", action_space=spaces.Discrete(2)),
        num_envs=2,
        total_env_steps=1000,
        seed=0,
        n_steps=6,
        value_estimator=estimator,
    ).learner


def fresh_rollout(actor) -> RolloutBatch:
    """A rollout whose log-probabilities are the actor's own (as if it had just acted)."""
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(6, 2, 3)).astype(np.float32)
    actions = rng.integers(0, 2, (6, 2))
    with torch.no_grad():
        logits = actor.model(torch.from_numpy(obs.reshape(12, 3)))
        log_prob = actor.policy.log_prob(logits, torch.from_numpy(actions.reshape(12)))
    ends = np.zeros((6, 2), bool)
    ends[2, 0] = True
    return RolloutBatch(
        obs=obs,
        next_obs=np.roll(obs, -1, axis=0),
        actions=actions,
        log_prob=log_prob.view(6, 2).numpy(),
        rewards=rng.normal(size=(6, 2)),
        terminated=ends.copy(),
        ends=ends,
        valid=np.ones((6, 2), bool),
    )


@pytest.mark.parametrize("option", ["a2c", "ppo"])
def test_vtrace_in_an_actor_critic_targets_gaes_returns_on_a_fresh_rollout(option: str) -> None:
    with_gae, with_vtrace = learner(option, "gae"), learner(option, "vtrace")
    batch = fresh_rollout(with_gae)
    expected, got = with_gae._advantages(batch), with_vtrace._advantages(batch)
    torch.testing.assert_close(got["returns"], expected["returns"], rtol=1e-5, atol=1e-5)
    if option == "a2c":  # gae_lambda = 1: both advantages are the n-step return minus V
        torch.testing.assert_close(got["advantages"], expected["advantages"])
    else:  # gae_lambda = 0.95: V-trace's bootstraps from the next target
        assert not torch.allclose(got["advantages"], expected["advantages"])
    np.testing.assert_allclose(with_vtrace._log_rhos(batch), 0.0, atol=1e-6)
    assert with_vtrace.learn(batch, Clock())


def test_an_unknown_estimator_is_refused_in_one_sentence() -> None:
    with pytest.raises(ConfigError, match=r"update\.value_estimator=retrace is invalid"):
        learner("a2c", "retrace")
