"""Population training: member k of a P = 3 population is a single learner, to float tolerance.

From the same weights, batches and noise (the population's draws recorded and member k's share
replayed to the single learner), every algorithm's member k computes the same statistics (losses
included), gradients and parameters, update after update, as `make(name, cfg_k)` does alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from learner_testkit import (ACT_DIM, OBS_DIM, TINY, RecordingNoise, ReplayNoise, stack_batches,
                             synthetic_batch)

from learner.algorithms import REGISTRY, make, make_population, stack_member_states
from learner.algorithms.base import sample_update_batches
from learner.buffers import RealStats, TransitionBuffer

P, SEEDS, UPDATES = 3, (5, 6, 7), 4


def member_cfgs(name: str, **extra) -> list[dict]:
    cfg = {"hidden": TINY, **extra}
    if "disc_hidden" in REGISTRY[name].config_cls.__dataclass_fields__:
        cfg["disc_hidden"] = TINY
    return [dict(cfg, seed=s) for s in SEEDS]


CASES = [(name, {}) for name in sorted(REGISTRY)] + [
    (name, {"disc_inputs": "normalized"}) for name in sorted(REGISTRY)
    if "disc_inputs" in REGISTRY[name].config_cls.__dataclass_fields__] + [
    (name, {"critic_layer_norm": True}) for name in ("sac", "cql", "h2o")]


def case_id(name: str, extra: dict) -> str:
    return f"{name}-" + ("layernorm" if extra.get("critic_layer_norm") else extra.get("disc_inputs", "raw"))


def member_batches(i: int) -> list[dict]:
    """Update i's batches for each member: different data per member (their own buffers)."""
    out = []
    for k in range(P):
        base = 1000 * k + 10 * i
        out.append({"real_batch": synthetic_batch(32, base), "sim_batch": synthetic_batch(32, base + 1, 0.5),
                    "disc_real": synthetic_batch(48, base + 2), "disc_sim": synthetic_batch(48, base + 3, 0.5)})
    return out


def tensors(sd: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    """Flatten a state dict's tensors (modules, optimiser moments, log_alpha) by path."""
    out = {}
    for key, v in sd.items():
        if key in ("gen", "step", "algorithm", "population", "param_groups"):
            continue
        if isinstance(v, dict):
            out.update(tensors(v, f"{prefix}{key}/"))
        elif isinstance(v, torch.Tensor):
            out[f"{prefix}{key}"] = v
    return out


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name, extra", CASES, ids=[case_id(n, e) for n, e in CASES])
def test_member_k_equals_a_single_learner(name, extra):
    cfgs = member_cfgs(name, **extra)
    pop = make_population(name, OBS_DIM, ACT_DIM, cfgs)
    singles = [make(name, OBS_DIM, ACT_DIM, c) for c in cfgs]
    # same weights: member k was initialised exactly as a single learner with seed k
    for k, s in enumerate(singles):
        mine, theirs = tensors(pop.member_state_dict(k)), tensors(s.state_dict())
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[n], theirs[n]) for n in mine)
    stats = RealStats(torch.randn(P, OBS_DIM), torch.rand(P, OBS_DIM) + 0.5, torch.randn(P, OBS_DIM) * 0.1,
                      torch.rand(P, OBS_DIM) * 0.1 + 0.01)
    pop.set_real_stats(stats)
    for k, s in enumerate(singles):
        s.set_real_stats(RealStats(stats.obs_mean[k], stats.obs_std[k], stats.delta_mean[k], stats.delta_std[k]))
    recorder = RecordingNoise(pop.noise)
    pop.noise = recorder
    for k, s in enumerate(singles):
        s.noise = ReplayNoise(recorder, k)
    for i in range(UPDATES):
        per_member = member_batches(i)
        stacked = {key: stack_batches([m[key] for m in per_member]) for key in per_member[0]}
        pop_stats = pop.update_population(**stacked)
        for k, s in enumerate(singles):
            stats = s.update(**per_member[k])
            assert stats.keys() == pop_stats.keys()
            for key, v in stats.items():
                assert pop_stats[key][k] == pytest.approx(v, rel=1e-4, abs=1e-6), (name, i, k, key)
    for k, s in enumerate(singles):
        # gradients of the last update, member k's slice
        for mod_name, mod in pop._modules.items():
            for (pname, p_pop), p_one in zip(mod.named_parameters(), s._modules[mod_name].parameters()):
                assert (p_pop.grad is None) == (p_one.grad is None), (mod_name, pname)
                if p_pop.grad is not None:
                    assert close(p_pop.grad[k:k + 1], p_one.grad), (name, mod_name, pname)
        # parameters, targets, optimiser moments, log_alpha after UPDATES updates
        mine, theirs = tensors(pop.member_state_dict(k)), tensors(s.state_dict())
        bad = [n for n in mine if not close(mine[n], theirs[n])]
        assert not bad, (name, k, bad)


def test_population_configs_may_differ_in_seed_only():
    with pytest.raises(ValueError, match="differ in their seed only.*beta"):
        make_population("h2o", OBS_DIM, ACT_DIM, [{"hidden": TINY, "disc_hidden": TINY},
                                                  {"hidden": TINY, "disc_hidden": TINY, "beta": 0.5, "seed": 1}])


def test_member_states_round_trip_and_export():
    cfgs = member_cfgs("h2o")
    pop = make_population("h2o", OBS_DIM, ACT_DIM, cfgs)
    per_member = member_batches(0)
    pop.update_population(**{key: stack_batches([m[key] for m in per_member]) for key in per_member[0]})
    members = [pop.member_state_dict(k) for k in range(P)]
    # a member's state loads into a single learner; the members stack back into the population
    single = make("h2o", OBS_DIM, ACT_DIM, cfgs[1])
    single.load_state_dict(members[1])
    assert single.step == 1
    other = make_population("h2o", OBS_DIM, ACT_DIM, cfgs)
    other.load_state_dict(stack_member_states(members))
    a, b = tensors(pop.state_dict()), tensors(other.state_dict())
    assert all(torch.equal(a[n], b[n]) for n in a)
    # member k's exported policy acts like the population's member k
    obs = torch.randn(P, 5, OBS_DIM)
    acts = pop.act_population(obs.numpy(), deterministic=True)
    for k in range(P):
        exported, _ = pop.policy_for_export(member=k)(obs[k], deterministic=True)
        assert np.allclose(exported.detach().numpy(), acts[k], atol=1e-6)
    with pytest.raises(ValueError, match="update_population"):
        pop.update(**per_member[0])


def test_population_sampler_gives_each_member_its_own_rows():
    from learner.buffers import PopulationSampler

    def member_buffer(k: int) -> TransitionBuffer:
        b = synthetic_batch(200, k, shift=float(k))
        buf = TransitionBuffer(OBS_DIM, ACT_DIM, 400, seed=k)
        buf.add(b.obs, b.act, b.rew, b.next_obs, b.done)
        return buf

    bufs = [member_buffer(k) for k in range(P)]
    twins = [member_buffer(k) for k in range(P)]  # the same buffers sampled alone, same generators
    sampler = PopulationSampler(bufs)
    for _ in range(3):
        batch = sampler.sample(16)
        assert batch.obs.shape == (P, 16, OBS_DIM) and batch.rew.shape == (P, 16)
        for k in range(P):
            alone = twins[k].sample(16)
            assert torch.equal(batch.obs[k], alone.obs) and torch.equal(batch.done[k], alone.done)
    algo = make_population("darc", OBS_DIM, ACT_DIM, member_cfgs("darc"))
    kw = sample_update_batches(algo, sampler.sample, sampler.sample, 8, 8, 12)
    assert kw["real_batch"] is None and kw["sim_batch"].obs.shape == (P, 16, OBS_DIM)
    assert kw["disc_real"].obs.shape == (P, 12, OBS_DIM)
    algo.update_population(**kw)
