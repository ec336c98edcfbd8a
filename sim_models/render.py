"""Offscreen rendering of an episode to GIF (imageio) or MP4, on a CPU-only machine.

Why EGL: Debian's libegl1 + libegl-mesa0 + libgl1 with MUJOCO_GL=egl render here (Mesa software
rendering, slow but enough for videos); osmesa failed with PyOpenGL 3.1.10. Set MUJOCO_GL before
mujoco is first imported; this module defaults it to egl when unset. Without a GL library,
`make_renderer` raises RenderingUnavailableError saying exactly what to install.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

if "mujoco" not in sys.modules:  # too late to choose once mujoco is imported
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

import mujoco  # after MUJOCO_GL is chosen
import numpy as np

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "offscreen rendering needs an OpenGL library: on Debian/Ubuntu run "
    "`sudo apt-get install libegl1 libegl-mesa0 libgl1` and set MUJOCO_GL=egl before importing "
    "mujoco (or install libosmesa6 and set MUJOCO_GL=osmesa)"
)


class RenderingUnavailableError(RuntimeError):
    """No working OpenGL context for offscreen rendering."""


def make_renderer(model: mujoco.MjModel, width: int = 320, height: int = 240) -> mujoco.Renderer:
    """A mujoco.Renderer, or RenderingUnavailableError with the packages to install."""
    try:
        return mujoco.Renderer(model, height=height, width=width)
    except Exception as err:  # mujoco raises several types (ImportError, RuntimeError, FatalError)
        raise RenderingUnavailableError(
            f"{INSTALL_HINT} (MUJOCO_GL={os.environ.get('MUJOCO_GL', 'unset')}; cause: {err})"
        ) from err


def render_episode(env: Any, policy: Callable[[np.ndarray], np.ndarray], path: str | Path,
                   max_steps: int = 400, every: int = 4, seed: int | None = 0,
                   fps: int | None = None) -> int:
    """Run `policy` in an rgb_array env, write every `every`-th frame to .gif or .mp4.

    Returns the number of frames written. Frame rate defaults to real time (control rate / every).
    """
    path = Path(path)
    if path.suffix not in (".gif", ".mp4"):
        raise ValueError(f"output must end in .gif or .mp4, got {path.name}")
    import imageio.v2 as imageio

    if path.suffix == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401  (imageio's MP4 writer)
        except ImportError as err:
            raise RenderingUnavailableError(
                "MP4 needs an ffmpeg backend: `pip install imageio-ffmpeg` (or write a .gif)"
            ) from err
    obs, _ = env.reset(seed=seed)
    frames = [env.render()]
    for step in range(1, max_steps + 1):
        obs, _, terminated, truncated, _ = env.step(policy(obs))
        if step % every == 0:
            frames.append(env.render())
        if terminated or truncated:
            break
    control_hz = getattr(getattr(env, "task", None), "control_hz", 200.0)
    fps = fps or max(1, int(round(control_hz / every)))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gif":
        imageio.mimsave(path, frames, duration=1000.0 / fps, loop=0)
    else:
        imageio.mimsave(path, frames, fps=fps)
    log.info("wrote %d frames to %s", len(frames), path)
    return len(frames)
