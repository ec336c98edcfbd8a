"""The robot state as one flat list of floats: the layout every task function reads.

Why: the simulator's sensor buffer (sim_models.robot) already has this layout, and the robot's
decoded STATE converts to it in one call, so both sides feed the same values to the same task
functions. Float32 values turned into Python floats are exact.

Layout: joint pos 0-5, joint vel 6-11, joint torque 12-17, quaternion (w, x, y, z) 18-21,
gyro 22-24, accelerometer 25-27 (actuator order of protocol.robot_types).
"""

from __future__ import annotations

from protocol.robot_types import WHEEL_INDICES, RobotState

POS, VEL, TORQUE, QUAT, GYRO, ACC = 0, 6, 12, 18, 22, 25
STATE_LEN = 28
PL, PR = POS + WHEEL_INDICES[0], POS + WHEEL_INDICES[1]  # wheel angles
VL, VR = VEL + WHEEL_INDICES[0], VEL + WHEEL_INDICES[1]  # wheel speeds


def state_values(state: RobotState) -> list:
    """The state's sensor values in the layout above (exact Python floats)."""
    return [*state.joint_pos.tolist(), *state.joint_vel.tolist(), *state.joint_torque.tolist(),
            *state.imu_quat.tolist(), *state.imu_gyro.tolist(), *state.imu_acc.tolist()]
