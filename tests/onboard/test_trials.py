"""The trial rule (onboard/trials.py): the t distribution, Welch's test, episodes from rows, verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from onboard.trials import (
    PROMOTED,
    ROLLED_BACK,
    SUPERSEDED,
    Episode,
    EpisodeTally,
    TrialConfig,
    TrialManager,
    betainc,
    student_t_sf,
    welch_one_sided,
)


@pytest.mark.parametrize("t,df,p", [
    (1.812461, 10, 0.05), (2.228139, 10, 0.025), (2.015048, 5, 0.05), (6.313752, 1, 0.05),
    (1.644854, 1e7, 0.05), (0.0, 3, 0.5), (-1.812461, 10, 0.95), (3.169273, 10, 0.005),
])
def test_student_t_tail_matches_tables(t, df, p):
    assert student_t_sf(t, df) == pytest.approx(p, abs=2e-6)


def test_incomplete_beta_edges_and_symmetry():
    assert betainc(2.0, 3.0, 0.0) == 0.0 and betainc(2.0, 3.0, 1.0) == 1.0
    assert betainc(2.0, 3.0, 0.4) == pytest.approx(1 - betainc(3.0, 2.0, 0.6), abs=1e-12)
    assert betainc(1.0, 1.0, 0.3) == pytest.approx(0.3)  # uniform


def test_welch_statistic_and_degrees_of_freedom_by_hand():
    a, b = [10.0, 12.0, 14.0, 11.0], [20.0, 25.0, 22.0, 30.0, 28.0]
    w = welch_one_sided(a, b, margin=1.0)
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 5
    assert w.t == pytest.approx((np.mean(a) - np.mean(b) + 1.0) / math.sqrt(va + vb))
    assert w.df == pytest.approx((va + vb) ** 2 / (va**2 / 3 + vb**2 / 4))
    assert w.p_not_worse + w.p_worse == pytest.approx(1.0)
    assert w.p_worse < 0.01  # a is clearly below b - 1


def test_welch_without_variance_decides_by_the_means():
    assert welch_one_sided([5, 5, 5], [5, 5], margin=1).p_not_worse == 0.0
    assert welch_one_sided([3, 3, 3], [5, 5], margin=1).p_worse == 0.0
    with pytest.raises(ValueError):
        welch_one_sided([1.0], [1.0, 2.0], 0.0)


def cols(versions, rew, terminated=None, truncated=None, flags=None):
    n = len(rew)
    return {"rew": np.asarray(rew, np.float32), "policy_version": np.asarray(versions, np.int64),
            "terminated": np.zeros(n, bool) if terminated is None else np.asarray(terminated, bool),
            "truncated": np.zeros(n, bool) if truncated is None else np.asarray(truncated, bool),
            "flags": np.zeros(n, np.uint8) if flags is None else np.asarray(flags, np.uint8)}


def test_tally_joins_batches_and_skips_controller_and_flagged_rows():
    t = EpisodeTally()
    assert t.add(cols([3, 3], [1, 2])) == []
    eps = t.add(cols([3, -1, -1, 4, 4], [4, 9, 9, 1, 1], truncated=[1, 0, 1, 0, 0]))
    assert eps == [Episode(3, 7.0, 3, False)]
    eps = t.add(cols([4, 4, 4], [1, 5, 1], terminated=[0, 0, 1], flags=[0, 4, 0]))
    assert eps == [Episode(4, 4.0, 4, True)]  # the flagged row is not part of the episode


def eps(mgr, version, returns, length=100):
    for r in returns:
        mgr.episode(Episode(version, float(r), length, False))


CFG = TrialConfig(min_episodes=4, max_episodes=10, max_s=100.0, reference_episodes=20, alpha=0.2, tolerance=0.1)


def test_first_version_is_promoted_after_its_minimum_episodes():
    m = TrialManager(CFG)
    m.start(1, 0.0)
    eps(m, 1, [10, 12, 11])
    assert m.poll(1.0) is None
    eps(m, 1, [9])
    v = m.poll(2.0)
    assert v.outcome == PROMOTED and m.incumbent == 1 and "no measured incumbent" in v.reason


def test_a_worse_candidate_is_rolled_back_and_a_better_one_promoted():
    rng = np.random.default_rng(0)
    m = TrialManager(CFG)
    m.adopt(1)
    eps(m, 1, rng.normal(1000, 100, 20))
    m.start(2, 0.0)
    eps(m, 2, rng.normal(600, 100, 4))
    v = m.poll(1.0)
    assert v.outcome == ROLLED_BACK and v.p_worse <= 0.2 and m.incumbent == 1 and len(v.reference) == 20
    m.start(3, 2.0)
    eps(m, 3, rng.normal(1200, 100, 4))
    v = m.poll(3.0)
    assert v.outcome == PROMOTED and v.p_not_worse <= 0.2 and m.incumbent == 3


@pytest.mark.parametrize("ratchet", [True, False])
def test_the_ratchet_stops_promotions_drifting_below_the_best_promoted_version(ratchet):
    """v2 is within the margin of v1, v3 within the margin of v2 but clearly below v1's: without the
    ratchet v3 is promoted (the robot drifts ~12 % below its best), with it v3 is rolled back."""
    import dataclasses

    m = TrialManager(dataclasses.replace(CFG, ratchet=ratchet))
    m.adopt(1)
    eps(m, 1, [1000, 1010, 990, 1005, 995] * 4)
    m.start(2, 0.0)
    eps(m, 2, [950, 955, 945, 950])
    assert m.poll(1.0).outcome == PROMOTED and m.incumbent == 2
    eps(m, 2, [950, 945, 955, 950] * 3)  # v2 drives on
    m.start(3, 2.0)
    eps(m, 3, [880, 882, 878, 880])  # > 950 - 95 (v2's margin), < 1000 - 100 (v1's)
    v = m.poll(3.0)
    if ratchet:
        assert v.outcome == ROLLED_BACK and m.incumbent == 2 and "best promoted v1" in v.reason
        assert v.reference[:4] == [950, 955, 945, 950]  # the report's reference is still the incumbent's
    else:
        assert v.outcome == PROMOTED and m.incumbent == 3
    # a version the operator rolled back is no reference any more: v4 is only tested against v2
    m.demote(1)
    m.start(4, 4.0)
    eps(m, 4, [880, 882, 878, 880])
    assert m.poll(5.0).outcome == PROMOTED


def test_no_evidence_of_not_worse_by_the_trial_end_rolls_back():
    m = TrialManager(CFG)
    m.adopt(1)
    eps(m, 1, [1000, 100] * 10)  # very noisy incumbent
    m.start(2, 0.0)
    eps(m, 2, [900, 50, 800, 100])
    assert m.poll(1.0) is None  # undecided
    eps(m, 2, [700, 60, 900, 100, 800, 50])
    v = m.poll(2.0)  # max_episodes reached
    assert v.outcome == ROLLED_BACK and "by the trial's end" in v.reason


def test_time_cap_falls_and_supersession():
    m = TrialManager(CFG)
    m.adopt(1)
    eps(m, 1, [100] * 20)
    m.start(2, 0.0)
    eps(m, 2, [100])
    assert m.poll(50.0) is None
    assert m.poll(100.0).outcome == ROLLED_BACK  # one episode in max_s
    m.start(3, 200.0)
    m.catch(3)
    for _ in range(3):
        m.fall(3)
    v = m.poll(201.0)
    assert v.outcome == ROLLED_BACK and v.falls == 3 and v.catches == 1 and m.stats[3].falls == 3
    m.start(4, 300.0)
    v = m.start(5, 301.0)
    assert v.outcome == SUPERSEDED and v.candidate == 4 and m.trial.candidate == 5 and m.incumbent == 1


def test_trials_off_makes_every_version_the_incumbent():
    m = TrialManager(TrialConfig(enabled=False))
    m.start(7, 0.0)
    assert m.trial is None and m.incumbent == 7


def test_config_checks():
    with pytest.raises(ValueError):
        TrialConfig(min_episodes=1)
    with pytest.raises(ValueError):
        TrialConfig(alpha=0.7)


def test_falls_alone_never_end_a_trial_with_max_falls_zero():
    m = TrialManager(TrialConfig(min_episodes=2, max_falls=0))
    m.start(1, 0.0)
    for _ in range(5):
        m.fall(1)
    assert m.poll(1.0) is None
    eps(m, 1, [10, 12])
    assert m.poll(2.0).outcome == PROMOTED


class FakeLoop:
    """What the supervisor reads and calls on the loop (onboard/loop.py), without a robot."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        from onboard.safety import Mode

        self.t = 0.0
        self.sched = SimpleNamespace(clock=SimpleNamespace(now=lambda: self.t), ticks=0)
        self.fsm = SimpleNamespace(mode=Mode.DAMPING, counts={}, armed=True)
        self.tick_hooks, self.policy, self.previous_policy = [], None, None

    @property
    def policy_version(self) -> int:
        return -1 if self.policy is None else self.policy.version

    def activate_policy(self, p) -> None:
        self.previous_policy, self.policy = self.policy, p


def test_the_trial_clock_runs_only_while_the_robot_stands_or_drives():
    from types import SimpleNamespace

    from onboard.safety import Mode
    from onboard.supervisor import PolicySupervisor

    loop, sent = FakeLoop(), []
    sup = PolicySupervisor(TrialConfig(max_s=100.0), report=sent.append)
    sup.attach(loop)
    loop.activate_policy(SimpleNamespace(version=1, fault=""))
    for _ in range(50):  # 500 s lying in DAMPING (a dead link): the trial waits
        loop.t += 10.0
        sup.tick()
    assert sup.trials.trial is not None and not sent
    loop.fsm.mode = Mode.POLICY
    for _ in range(12):
        loop.t += 10.0
        sup.tick()
    assert sent and sent[0].outcome == "rolled_back" and "0 episodes" in sent[0].reason
    assert 100.0 <= sent[0].duration_s <= 120.0 and loop.policy is None  # back to the controller


def test_the_best_measured_version_stays_in_the_robots_cache():
    """The learner deploys the best version the robot measured and a demo pins it at the end: the
    robot must still hold it after many later versions (it was evicted once, 8 versions on)."""
    from types import SimpleNamespace

    from onboard.supervisor import PolicySupervisor

    m = TrialManager(CFG)
    assert m.best_measured() == -1
    eps(m, 2, [900, 950, 1000, 980])
    eps(m, 3, [5000, 5000, 5000])  # too few episodes to count
    eps(m, 4, [500, 600, 550, 580, 590])
    assert m.best_measured() == 2
    sup = PolicySupervisor(CFG, report=lambda v: None)
    sup.trials = m
    for v in range(1, 21):
        sup._remember(SimpleNamespace(version=v))
    assert 2 in sup._cache and 20 in sup._cache and len(sup._cache) == sup.keep_policies


def test_the_best_promoted_version_stays_in_the_robots_cache_too():
    """The learner deploys only promoted versions: when the best measured overall is one the robot
    rolled back, the best promoted one must stay as well (a demo's end pin was refused once)."""
    from types import SimpleNamespace

    from onboard.supervisor import PolicySupervisor

    m = TrialManager(CFG)
    eps(m, 2, [900, 950, 1000, 980])  # promoted (trusted) below
    eps(m, 5, [3000, 3100, 2900, 3050])  # measured best, never trusted (say it was rolled back on falls)
    eps(m, 6, [400, 420, 410, 430])  # trusted, worse than 2
    assert m.best_measured() == 5 and m.best_measured(among={2, 6}) == 2
    sup = PolicySupervisor(CFG, report=lambda v: None)
    sup.trials = m
    sup._trusted = [2, 6, 8, 9]  # 2 is not among the last two trusted
    for v in range(1, 30):
        sup._remember(SimpleNamespace(version=v))
    assert {2, 5, 29} <= set(sup._cache) and len(sup._cache) == sup.keep_policies


def test_the_best_few_promoted_versions_stay_in_the_robots_cache():
    """The learner ranks promoted versions by its own window of episodes (the trial reports'), the
    robot by its own; a demo's end pin was refused when the learner's first was the robot's second
    (evicted). The robot keeps its best KEEP_BEST_PROMOTED promoted versions."""
    from types import SimpleNamespace

    from onboard.supervisor import KEEP_BEST_PROMOTED, PolicySupervisor

    m = TrialManager(CFG)
    promoted = [2, 4, 6, 8, 10, 12]
    for k, v in enumerate(promoted):
        eps(m, v, [1000.0 + 100 * k] * 4)
    top = sorted(promoted, reverse=True)[:KEEP_BEST_PROMOTED]
    assert m.top_measured(KEEP_BEST_PROMOTED, among=set(promoted)) == top
    sup = PolicySupervisor(CFG, report=lambda v: None)
    sup.trials = m
    sup._trusted = promoted + [40, 41]
    for v in range(1, 60):
        sup._remember(SimpleNamespace(version=v))
    assert set(top) <= set(sup._cache) and 59 in sup._cache
