"""The robot's numbers every task shares: rates, wheel and leg geometry, limits, and the kinematics
built on them (pitch, roll, odometry, base height), on plain float values.

Why plain floats: the simulator's env calls these every control step on its float32 sensor
buffer turned into a list, and the robot calls them on its decoded STATE; the same Python float
arithmetic on both gives bit-identical observations. tests/task_contract checks the geometry
against the compiled MJCF (sim_models/wheel_legged/wheel_legged.xml).
"""

from __future__ import annotations

import math

from task_contract.state import GYRO, PL, PR, QUAT, VL, VR

CONTROL_HZ = 200.0
EPISODE_STEPS = 1000
WHEEL_RADIUS_M = 0.065  # = sim_models.model.WHEEL_RADIUS_M and the tyre geoms' radius
# Leg geometry (base frame, joint zero = the nominal crouch); the MJCF's body offsets and eulers.
THIGH_M = 0.14
SHANK_M = 0.14
HIP_ZERO_RAD = 0.6  # thigh pitched back at joint zero
KNEE_ZERO_RAD = -1.2  # shank relative to thigh at joint zero
MAX_PITCH_RAD = math.pi / 6
MAX_ROLL_RAD = math.pi / 18  # the authors' 3-D task: reset when |roll| > 10 deg


def pitch_of_values(b: list) -> float:
    """Pitch (rotation about +y, nose down positive) from the state values' w, x, y, z quaternion."""
    w, x, y, z = b[QUAT:QUAT + 4]
    return math.asin(max(-1.0, min(1.0, 2.0 * (w * y - z * x))))


def roll_of_values(b: list) -> float:
    """Roll (rotation about +x) from the state values' quaternion."""
    w, x, y, z = b[QUAT:QUAT + 4]
    return math.atan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y))


def wheel_travel_rad(b: list, pitch: float) -> float:
    """The wheels' mean rotation in the world (encoders measure it relative to the base)."""
    return 0.5 * (b[PL] + b[PR]) + pitch


def axle_speed(b: list) -> float:
    """Axle speed along the base's forward axis (m/s) from the wheel encoders and the gyro."""
    return WHEEL_RADIUS_M * (0.5 * (b[VL] + b[VR]) + b[GYRO + 1])


def base_height_values(b: list, pitch: float) -> float:
    """Base-centre height above the floor from leg kinematics and pitch (flat floor assumed)."""
    s, co = math.sin(pitch), math.cos(pitch)
    total = 0.0
    for hip, knee in ((0, 1), (3, 4)):
        t1 = HIP_ZERO_RAD + b[hip]
        t2 = t1 + KNEE_ZERO_RAD + b[knee]
        ax = -THIGH_M * math.sin(t1) - SHANK_M * math.sin(t2)
        az = -THIGH_M * math.cos(t1) - SHANK_M * math.cos(t2)
        total += WHEEL_RADIUS_M - (-s * ax + co * az)
    return 0.5 * total
