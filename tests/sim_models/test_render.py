"""Offscreen rendering (EGL, Mesa software): a few frames of an episode to a GIF."""

from __future__ import annotations

import os
import subprocess
import sys

import imageio.v2 as imageio
import numpy as np
import pytest

from sim_models.controller import BalanceController
from sim_models.envs import WheelLeggedEnv
from sim_models.render import INSTALL_HINT, render_episode


def test_env_renders_rgb_frames_of_the_robot():
    env = WheelLeggedEnv("stand_still", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    env.close()
    assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8
    assert frame.std() > 10  # not a blank image


def test_render_episode_writes_a_gif(tmp_path):
    env = WheelLeggedEnv("move_straight", render_mode="rgb_array")
    ctrl = BalanceController("move_straight")
    n = render_episode(env, ctrl.act, tmp_path / "ep.gif", max_steps=20, every=10)
    env.close()
    frames = imageio.mimread(tmp_path / "ep.gif")
    assert n == 3 and len(frames) == 3 and frames[0].shape[:2] == (240, 320)


def test_render_rejects_unknown_formats_and_names_the_packages(tmp_path):
    env = WheelLeggedEnv("stand_still", render_mode="rgb_array")
    with pytest.raises(ValueError, match=r"\.gif or \.mp4"):
        render_episode(env, lambda o: np.zeros(1), tmp_path / "ep.avi")
    env.close()
    assert "libegl1 libegl-mesa0 libgl1" in INSTALL_HINT


def test_without_a_gl_context_the_error_says_what_to_install():
    """mujoco imported with no GL backend chosen and no display: a typed error, not a crash."""
    code = (
        "import mujoco\n"
        "from sim_models.model import load_model\n"
        "from sim_models.render import RenderingUnavailableError, make_renderer\n"
        "try:\n"
        "    make_renderer(load_model())\n"
        "except RenderingUnavailableError as err:\n"
        "    print('TYPED', err)\n"
    )
    env = {k: v for k, v in os.environ.items()
           if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=env)
    assert out.returncode == 0, out.stderr
    assert "TYPED" in out.stdout and "apt-get install libegl1 libegl-mesa0 libgl1" in out.stdout


def test_mp4_is_written_or_the_missing_backend_is_named(tmp_path):
    from sim_models.render import RenderingUnavailableError

    env = WheelLeggedEnv("stand_still", render_mode="rgb_array")
    try:
        n = render_episode(env, lambda o: np.zeros(1), tmp_path / "ep.mp4", max_steps=8, every=4)
        assert n == 3 and (tmp_path / "ep.mp4").stat().st_size > 0
    except RenderingUnavailableError as err:
        assert "imageio-ffmpeg" in str(err)
    finally:
        env.close()


@pytest.mark.parametrize("task", ["stand_still", "move_straight"])
def test_render_fps_is_the_control_rate_so_one_frame_per_step_plays_in_real_time(task):
    """A video made with one frame per env step at metadata['render_fps'] (what gymnasium's
    RecordVideo does) lasts exactly as long as the simulated episode."""
    import gymnasium as gym

    from sim_models.tasks import ENV_IDS

    env = WheelLeggedEnv(task, render_mode="rgb_array")
    env.reset(seed=0)
    t0 = env.sim.data.time
    steps = 20
    for _ in range(steps):
        env.step(np.zeros(env.action_space.shape, np.float32))
    sim_seconds = env.sim.data.time - t0
    assert env.metadata["render_fps"] == env.task.control_hz == 200
    assert steps / env.metadata["render_fps"] == pytest.approx(sim_seconds, rel=1e-6)
    env.close()
    made = gym.make(ENV_IDS[task], render_mode="rgb_array")  # the registered id, through gymnasium's wrappers
    assert made.metadata["render_fps"] == 200
    made.close()
