"""Pure math on arrays: discounted returns, baselines, advantage normalisation, value targets.

Arrays are time-major: ``rewards[t, n]`` is the reward after step ``t`` in env ``n``.
"""

from __future__ import annotations

import math

import numpy as np


def discounted_returns(
    rewards: np.ndarray,
    episode_end: np.ndarray,
    gamma: float,
    bootstrap: np.ndarray | None = None,
) -> np.ndarray:
    """Return-to-go ``G_t = r_t + gamma * G_{t+1}``, restarted at every episode end.

    At an episode end, ``G_t = r_t + gamma * bootstrap_t``: zero after termination, the value of
    the final observation after truncation (Sutton & Barto 2018, eq. 3.8; Pardo et al. 2018).

    The scan runs in blocks of about ``sqrt(T)`` steps, so its Python loop has about
    ``2 sqrt(T)`` iterations instead of ``T``: first every block at once, as if the return after
    the block were zero, then block by block from the last, adding the next block's first return
    discounted by ``gamma^k`` to the steps ``k`` before it that reach it without an episode end.
    Results equal the step-by-step recurrence up to rounding (a few ulps).

    Args:
        rewards: ``[T, N]`` rewards.
        episode_end: ``[T, N]`` bool, True where an episode ended after step ``t``.
        gamma: discount factor in [0, 1].
        bootstrap: ``[T, N]`` value used at episode ends (defaults to zero).

    Returns:
        ``[T, N]`` float64 returns. Steps after the last episode end of a column are returns of an
        unfinished episode and must not be used.

    >>> discounted_returns(np.array([[1.0], [1.0], [1.0]]), np.array([[0], [0], [1]], bool), 0.5)
    array([[1.75],
           [1.5 ],
           [1.  ]])
    """
    steps, rest = len(rewards), rewards.shape[1:]
    width = max(1, math.isqrt(steps))
    blocks = -(-steps // width)
    pad = blocks * width - steps  # leading steps that end episodes, so they reach nothing

    def in_blocks(x: np.ndarray, fill: float | bool) -> np.ndarray:
        if pad:
            x = np.concatenate([np.full((pad, *rest), fill, x.dtype), x])
        return x.reshape(blocks, width, *rest)

    reward = in_blocks(np.asarray(rewards), 0)
    end = in_blocks(np.asarray(episode_end, bool), True)
    boot = None if bootstrap is None else in_blocks(np.asarray(bootstrap), 0)
    going_on = ~end
    returns = np.empty(reward.shape, np.float64)
    reaches_next = np.empty(end.shape, bool)  # no episode end from this step to the block's end
    tail = np.zeros((blocks, *rest))
    reaches = np.ones((blocks, *rest), bool)
    for k in range(width - 1, -1, -1):
        tail = np.where(end[:, k], 0.0 if boot is None else boot[:, k], tail)
        row = returns[:, k]
        np.multiply(tail, gamma, row)
        np.add(row, reward[:, k], row)
        tail = row
        reaches = np.logical_and(reaches, going_on[:, k], reaches_next[:, k])
    discount = gamma ** np.arange(width, 0, -1, dtype=np.float64)
    discount = discount.reshape(width, *[1] * len(rest))
    for b in range(blocks - 2, -1, -1):
        returns[b] += np.where(reaches_next[b], discount * returns[b + 1, 0], 0.0)
    return returns.reshape(blocks * width, *rest)[pad:]


def update_time_baseline(
    baseline: np.ndarray,
    seen: np.ndarray,
    time_index: np.ndarray,
    returns: np.ndarray,
    decay: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Running, time-dependent average return ``b_t`` (torch-twrl's default baseline).

    ``b_t`` moves toward the mean of this batch's returns observed at episode step ``t``:
    ``b_t <- decay * b_t + (1 - decay) * mean(G_t)``, or takes that mean when ``t`` is new.

    Args:
        baseline: ``[H]`` current averages by episode step (grown as needed).
        seen: ``[H]`` bool, whether ``b_t`` has been set.
        time_index: ``[B]`` episode step of each sample.
        returns: ``[B]`` return of each sample.
        decay: weight of the old average, in [0, 1).

    >>> b, s = update_time_baseline(np.zeros(0), np.zeros(0, bool), np.array([0, 0, 1]),
    ...                             np.array([2.0, 4.0, 1.0]), 0.5)
    >>> b.tolist(), s.tolist()
    ([3.0, 1.0], [True, True])
    """
    horizon = int(time_index.max()) + 1 if time_index.size else 0
    if horizon > baseline.size:
        baseline = np.concatenate([baseline, np.zeros(horizon - baseline.size)])
        seen = np.concatenate([seen, np.zeros(horizon - seen.size, dtype=bool)])
    sums = np.bincount(time_index, weights=returns, minlength=baseline.size)
    counts = np.bincount(time_index, minlength=baseline.size)
    present = counts > 0
    means = np.divide(sums, counts, out=np.zeros_like(sums), where=present)
    blended = np.where(seen, decay * baseline + (1.0 - decay) * means, means)
    return np.where(present, blended, baseline), seen | present


def normalize(x: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Zero mean, unit standard deviation (a single sample is centred only)."""
    centred = x - x.mean()
    return centred / (x.std() + eps) if x.size > 1 else centred


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    episode_end: np.ndarray,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalized advantage estimation (Schulman et al. 2016) over a ``[T, N]`` rollout.

    ``delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)`` and
    ``A_t = delta_t + gamma * lam * (1 - end_t) * A_{t+1}``, where ``V(s_{t+1})`` is the value of
    the observation that followed step ``t``: the final observation where an episode was
    truncated (it bootstraps), zero weight where it terminated (it does not), and the next row's
    observation otherwise; the rollout's last row bootstraps from ``next_values`` as well.

    Args:
        rewards, terminated, episode_end: ``[T, N]`` (``episode_end`` = terminated | truncated).
        values: ``[T, N]`` ``V(s_t)``.
        next_values: ``[T, N]`` ``V(s_{t+1})``, the value of the observation after each step.
        gamma, lam: discount and GAE ``lambda``.

    Returns:
        ``(advantages, returns)``, ``[T, N]`` each, ``returns = advantages + values`` (the
        lambda-returns that the critic regresses on).

    With ``lam = 1`` the advantage is the Monte-Carlo return minus ``V``; with ``lam = 0`` it is
    the one-step TD error:

    >>> r = np.ones((3, 1)); v = np.zeros((3, 1)); end = np.array([[0], [0], [1]], bool)
    >>> gae(r, v, v, end, end, 0.5, 1.0)[0].ravel().tolist()
    [1.75, 1.5, 1.0]
    """
    advantages = np.zeros(rewards.shape, dtype=np.float64)
    running = np.zeros(rewards.shape[1:], dtype=np.float64)
    for t in range(rewards.shape[0] - 1, -1, -1):
        delta = rewards[t] + gamma * (1.0 - terminated[t]) * next_values[t] - values[t]
        running = delta + gamma * lam * (1.0 - episode_end[t]) * running
        advantages[t] = running
    return advantages, advantages + values


def n_step_return(rewards: np.ndarray, terminated: bool, gamma: float) -> tuple[float, float]:
    """``(sum_k gamma^k r_k, gamma^n)`` of the ``n`` rewards of an n-step transition; the
    discount of the bootstrap is 0 when the last of them terminated the episode.

    >>> n_step_return(np.array([1.0, 1.0, 1.0]), False, 0.5)
    (1.75, 0.125)
    >>> n_step_return(np.array([1.0, 1.0]), True, 0.5)
    (1.5, 0.0)
    """
    discounts = gamma ** np.arange(len(rewards))
    total = float(np.dot(discounts, rewards))
    return total, 0.0 if terminated else float(gamma ** len(rewards))


def vtrace(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    episode_end: np.ndarray,
    gamma: float,
    lam: float,
    log_rhos: np.ndarray,
    rho_clip: float = 1.0,
    c_clip: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """V-trace targets and advantages (Espeholt et al. 2018, eq. 1 and section 4.2) over a
    ``[T, N]`` rollout, with the episode semantics of :func:`gae`.

    With ``rho_t = min(rho_clip, pi/mu)``, ``c_t = lam * min(c_clip, pi/mu)`` and
    ``delta_t = rho_t (r_t + gamma (1 - terminated_t) V(s_{t+1}) - V(s_t))``, the value targets
    are ``v_t = V(s_t) + delta_t + gamma c_t (1 - end_t) (v_{t+1} - V(s_{t+1}))``, and the
    policy-gradient advantages ``A_t = rho_t (r_t + gamma (1 - terminated_t) v'_{t+1} - V(s_t))``
    with ``v'_{t+1}`` the next target ``v_{t+1}``, or ``V(s_{t+1})`` after an episode end
    (truncation bootstraps from the final observation) and at the rollout's cut.

    On-policy (``log_rhos = 0``) the targets are :func:`gae`'s lambda-returns, but the
    advantage is not GAE's ``v_t - V(s_t)``: it bootstraps one step later, from the next
    target, ``r_t + gamma v_{t+1} - V(s_t)`` (with ``lam = 0`` a two-step TD error, where GAE's
    is one step; with ``lam = 1`` both are the Monte-Carlo return minus ``V``).

    Args:
        rewards, terminated, episode_end: ``[T, N]`` (``episode_end`` = terminated | truncated).
        values, next_values: ``[T, N]`` ``V(s_t)`` and ``V(s_{t+1})``, as for :func:`gae`.
        gamma, lam: discount and trace ``lambda``.
        log_rhos: ``[T, N]`` ``log pi(a_t|s_t) - log mu(a_t|s_t)``, target over behaviour policy.
        rho_clip, c_clip: the truncation levels ``rho-bar`` (of the fixed point) and ``c-bar``
            (of the traces), ``rho_clip >= c_clip``.

    Returns:
        ``(advantages, targets)``, ``[T, N]`` float64 each.

    >>> r = np.ones((2, 1)); v = np.zeros((2, 1)); no = np.zeros((2, 1), bool)
    >>> a, v_s = vtrace(r, v, v, no, no, 0.5, 1.0, np.zeros((2, 1)))
    >>> v_s.ravel().tolist(), a.ravel().tolist()
    ([1.5, 1.0], [1.5, 1.0])
    """
    ratios = np.exp(np.asarray(log_rhos, np.float64))
    rhos, cs = np.minimum(rho_clip, ratios), lam * np.minimum(c_clip, ratios)
    going_on = 1.0 - np.asarray(episode_end, np.float64)
    bootstrap = gamma * (1.0 - np.asarray(terminated, np.float64))
    deltas = rhos * (rewards + bootstrap * next_values - values)
    corrections = np.zeros(rewards.shape, dtype=np.float64)  # v_t - V(s_t)
    running = np.zeros(rewards.shape[1:], dtype=np.float64)
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = deltas[t] + gamma * cs[t] * going_on[t] * running
        corrections[t] = running
    targets = values + corrections
    following = np.concatenate([targets[1:], next_values[-1:]])  # v_{t+1}; the cut: V(s_T)
    next_targets = np.where(going_on > 0, following, next_values)
    advantages = rhos * (rewards + bootstrap * next_targets - values)
    return advantages, targets
