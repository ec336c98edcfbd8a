"""The virtual robot: motor firmware rules, fault injection and MuJoCo behind a pty.

What the robot computer talks to when there is no robot (docs/firmware_bridge.md). Its parts:
`robot.py` (VirtualRobot, its config and command line: `python -m firmware_bridge.virtual_robot`),
`firmware.py` (the motor board's rules: power states, e-stop, watchdog, limits), `faults.py`
(what to break on the line and in the sensors), `pty_port.py` (the firmware end of a
pseudo-terminal), `stand_plant.py` (a plant without MuJoCo, for the firmware's own tests).
Only `robot.make_plant` imports MuJoCo.
"""

from firmware_bridge.virtual_robot.robot import (  # noqa: F401 - the package's API
    VirtualRobot,
    VirtualRobotConfig,
    VirtualRobotConfigError,
    base_tilt_rad,
    build_arg_parser,
    config_from_args,
    load_config,
    main,
    make_plant,
)
