"""Algorithm registry: `make(name, obs_dim, act_dim, cfg, device)` for one learner,
`make_population(name, obs_dim, act_dim, [cfg, ...], device)` for P of them trained as one batched
computation (learner/algorithms/base.py).

Names: h2o, sac (sim only), cql (real only), darc (sim only, reward correction), darc_plus
(DARC + real data), h2o_plus (H2O+: no omega penalty, IQL value in a blended target), bc
(behaviour cloning on real data). All share networks, buffers and the interface in
learner/algorithms/base.py.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from learner.algorithms.base import Learner, OffPolicyAlgorithm, SACCoreConfig, stack_member_states
from learner.algorithms.bc import BC, BCConfig
from learner.algorithms.cql import CQL, CQLConfig
from learner.algorithms.darc import DARC, DARCConfig, DARCPlus
from learner.algorithms.h2o import H2O, H2OConfig
from learner.algorithms.h2o_plus import H2OPlus, H2OPlusConfig
from learner.algorithms.sac import SAC, SACConfig

REGISTRY: dict[str, type[Learner]] = {
    "h2o": H2O,
    "sac": SAC,
    "cql": CQL,
    "darc": DARC,
    "darc_plus": DARCPlus,
    "h2o_plus": H2OPlus,
    "bc": BC,
}


class UnknownAlgorithmError(ValueError):
    """An algorithm name that is not in the registry."""


def config_class(name: str) -> type:
    return _lookup(name).config_cls


def _lookup(name: str) -> type[Learner]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownAlgorithmError(f"unknown algorithm {name!r}; choices: {', '.join(sorted(REGISTRY))}") from None


def make(name: str, obs_dim: int, act_dim: int, cfg: Any = None, device: str | torch.device = "cpu") -> Learner:
    """Build an algorithm by name. cfg: None, its config dataclass, or a dict of overrides."""
    return _lookup(name)(obs_dim, act_dim, cfg, device)


def make_population(name: str, obs_dim: int, act_dim: int, cfgs: Sequence[Any],
                    device: str | torch.device = "cpu") -> Learner:
    """P learners of one algorithm as one batched computation, member k built from cfgs[k] exactly
    as make(name, ..., cfgs[k]) would build it. The configs may differ in their seed only."""
    return _lookup(name)(obs_dim, act_dim, None, device, members=list(cfgs))


__all__ = ["make", "make_population", "Learner", "stack_member_states", "REGISTRY", "UnknownAlgorithmError", "config_class", "OffPolicyAlgorithm", "SACCoreConfig",
           "H2O", "H2OConfig", "SAC", "SACConfig", "BC", "BCConfig", "CQL", "CQLConfig", "DARC", "DARCConfig", "DARCPlus", "H2OPlus", "H2OPlusConfig"]
