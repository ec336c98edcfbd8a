"""learner.robot_rules: the simulator judged by the robot's episode rules (hand-over, catch)."""

from __future__ import annotations

import numpy as np
import pytest

from learner.robot_rules import RobotRules, evaluate, load_policy, main


def test_the_catch_decides_the_controllers_score_on_moderate():
    """The tuned controller swings past 0.25 rad on moderate: caught every time under the robot's
    rules, whole episodes with the catch out of the way."""
    caught = evaluate(load_policy("controller", "stand_still"), "stand_still:action_history=2", "moderate",
                      seconds=20, rules=RobotRules(catch_rad=0.25))
    assert caught and all(e.end == "catch" for e in caught)
    assert np.mean([e.length for e in caught]) < 400
    free = evaluate(load_policy("controller", "stand_still"), "stand_still:action_history=2", "moderate",
                    seconds=20, rules=RobotRules(catch_rad=0.5))
    assert [e.end for e in free] == ["length"] * len(free) and len(free) >= 2
    assert min(e.ret for e in free) > 25_000 > max(e.ret for e in caught)


def test_a_linear_policy_and_bad_input(capsys):
    zero = load_policy("linear:0,0,0,0,0,0", "stand_still:action_history=2")
    assert zero(np.ones(6, np.float32)) == 0.0
    with pytest.raises(ValueError, match="6 numbers"):
        load_policy("linear:1,2", "stand_still:action_history=2")
    with pytest.raises(ValueError, match="action_history=2"):
        load_policy("linear:0,0,0,0,0,0", "stand_still")
    past = load_policy("linear:0,0,0,0,1,0", "stand_still:action_history=2,obs_history=1")
    assert past(np.r_[np.zeros(8), 0.5, 0.25].astype(np.float32)) == 0.5  # a_-1 sits after the past obs
    with pytest.raises(ValueError, match="paper tasks"):
        evaluate(zero, "turn", seconds=1)
    assert main(["controller", "--seconds", "5"]) == 0
    assert "controller:" in capsys.readouterr().out
