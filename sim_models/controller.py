"""The classical balance controller lives in the task contract (task_contract.controller), which
the robot imports without sim_models; this name stays for the simulator-side callers."""

from task_contract.controller import (  # noqa: F401
    CROUCH_RATE_RAD_S,
    DETUNED_GAIN,
    INTEGRAL_LIMIT_M_S,
    LQR_GAIN,
    YAW_RATE_GAIN,
    BalanceController,
    UnsupportedTaskError,
)
