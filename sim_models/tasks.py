"""The tasks live in the task contract (task_contract.tasks: observation, reward, termination,
action mapping; numpy only, what the robot imports). This module re-exports them for the
simulator-side callers and adds the gymnasium ids of the tasks."""

from task_contract.actuation import clip_unit as _clip_scalar  # noqa: F401
from task_contract.geometry import (  # noqa: F401
    CONTROL_HZ,
    EPISODE_STEPS,
    HIP_ZERO_RAD,
    KNEE_ZERO_RAD,
    MAX_PITCH_RAD,
    MAX_ROLL_RAD,
    SHANK_M,
    THIGH_M,
    WHEEL_RADIUS_M,
)
from task_contract.tasks import (  # noqa: F401
    LEG_INDICES,
    LEG_KD,
    LEG_KP,
    LEG_RANGE_RAD,
    LOCO_DEFAULT_COMMAND,
    LOCO_HEIGHT_RANGE,
    LOCO_SPEED_RANGE,
    LOCO_WHEEL_TORQUE_NM,
    PAPER_TORQUE_NM,
    STRAIGHT_SPEED_MPS,
    TASKS,
    TURN_DEFAULT_YAW_RATE,
    TURN_YAW_RATE_RANGE,
    WHEEL_INDICES,
    TaskSpec,
    UnknownTaskError,
    base_height,
    get_task,
    pitch_of,
    roll_of,
    wheel_odometry,
)

# Gymnasium ids of the tasks (registered by `import sim_models` where gymnasium is installed).
ENV_IDS: dict[str, str] = {
    "stand_still": "h2o/StandStill-v0",
    "move_straight": "h2o/MoveStraight-v0",
    "turn": "h2o/Turn-v0",
    "locomotion": "h2o/Locomotion-v0",
}
