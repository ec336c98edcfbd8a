"""Suite-wide settings. Each package's tests live in tests/<package>/ with their own fixtures."""

import os

# Offscreen rendering without a display (Mesa software EGL); set before mujoco is imported.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
