"""device=cpu|cuda|auto: the device is resolved (a GPU this machine lacks is refused in one
sentence before anything runs), every network and tensor an agent makes is made on it, the
learning code crosses between numpy and torch only through twrl_exp.devices (so that a batch
goes to the network's device and results come back from it), and a run's results on the CPU are
those of the code before devices existed (the same curves: other tests pin them)."""

from __future__ import annotations

import re

import pytest
import torch

from twrl_exp import devices
from twrl_exp.build import build, check_run_config
from twrl_exp.errors import ConfigError
from twrl_exp.paths import source_root
from twrl_exp.population import structure_key

SRC = source_root() / "twrl_exp"
# Stacked (population) learners run on the CPU only: structure_key keeps GPU runs out of them.
CPU_ONLY = {
    "stacked.py",
    "stacked_dqn.py",
    "stacked_off_policy.py",
    "stacked_ppo.py",
    "stacked_reinforce.py",
}
CROSSINGS = re.compile(r"torch\.from_numpy\(|\.numpy\(\)")


def test_cpu_and_auto_resolve_here_and_a_missing_gpu_is_refused() -> None:
    assert devices.resolve("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert devices.resolve("auto").type == expected
    with pytest.raises(ConfigError, match=r"device=gpu is invalid: it must be cpu, cuda, cuda:N"):
        devices.resolve("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError) as caught:
            devices.resolve("cuda")
        assert str(caught.value).startswith("device=cuda is not available: this torch (")
        assert str(caught.value).endswith("sees no CUDA GPU; use device=cpu or device=auto.")


def test_a_run_asking_for_a_missing_gpu_is_refused_before_it_starts(make_cfg) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(ConfigError, match="device=cuda is not available"):
        check_run_config(make_cfg("update=ppo", "device=cuda"))


@pytest.mark.parametrize(
    "overrides",
    [
        ("update=ppo",),
        ("update=dqn",),
        ("env=pendulum", "update=sac"),
        ("env=pendulum", "update=td3"),
        ("update=reinforce", "update.baseline=value"),
        ("env=minatar_breakout", "update=a2c"),
    ],
)
def test_every_network_and_tensor_of_an_agent_is_made_on_its_device(make_cfg, overrides) -> None:
    """Built inside ``torch.device(...)``: checked here with the CPU, and with the meta device
    (which holds no data, as a GPU's memory is not the host's), where a tensor made without the
    context would land on the CPU and be caught."""
    from twrl_exp.build import _build_agent, build_agent

    cfg = make_cfg(*overrides, "env.num_envs=1")
    built = build(cfg, evaluation=False)
    space, actions = built.env.single_observation_space, built.env.single_action_space
    built.close()
    agent = build_agent(cfg, space, actions, 1, device="cpu")
    with torch.device("meta"):
        meta = _build_agent(cfg, space, actions, 1)
    for built_agent, kind in ((agent, "cpu"), (meta, "meta")):
        tensors = _tensors(built_agent.update.learner)
        assert tensors, overrides
        assert {t.device.type for t in tensors} == {kind}, overrides


def _tensors(root: object) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    seen: set[int] = set()

    def walk(obj: object, depth: int) -> None:
        if id(obj) in seen or depth > 4:
            return
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            found.append(obj)
        elif isinstance(obj, torch.nn.Module):
            found.extend(obj.parameters())
            found.extend(obj.buffers())
        elif isinstance(obj, torch.optim.Optimizer):
            for group in obj.param_groups:
                found.extend(group["params"])
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                walk(item, depth + 1)
        elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("twrl_exp"):
            for value in vars(obj).values():
                walk(value, depth + 1)

    walk(root, 0)
    return found


def test_the_learning_code_crosses_numpy_and_torch_only_through_devices() -> None:
    offenders = []
    for folder in ("update", "model", "policy"):
        for path in sorted((SRC / folder).glob("*.py")):
            if path.name in CPU_ONLY:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if CROSSINGS.search(line.split("#", 1)[0]):
                    offenders.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_runs_on_a_gpu_train_one_by_one_not_as_a_population(make_cfg) -> None:
    from omegaconf import OmegaConf

    cpu = OmegaConf.to_container(make_cfg("update=ppo"), resolve=True)
    gpu = OmegaConf.to_container(make_cfg("update=ppo", "device=cuda"), resolve=True)
    assert structure_key(cpu) is not None
    assert structure_key(gpu) is None
