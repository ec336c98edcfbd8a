"""The task contract: what a task is, one definition for the simulator and the robot.

NUMPY ONLY (plus protocol.robot_types): the robot installs this without gymnasium, torch, mujoco
or h5py (tests/task_contract/test_robot_install.py checks it in a clean interpreter).

- `state`: the flat sensor-value layout every task function reads
- `geometry`: rates, wheel and leg geometry, kinematics (checked against the MJCF in a test)
- `actuation`: action -> motor command and back, one table per task
- `tasks`: observation, reward, termination per task; `TaskSpec`, `TASKS`, `get_task`
- `history`: task options (`action_history`, `obs_history`), the observation layout, task ids
- `episodes`: the task's episodes over a robot's stream and the flags of rows outside them
- `controller`: the classical balance controller (the robot's STAND driver, the behaviour policy)
- `layout`: the policy metadata that names the observation layout and every actuator's scale
docs/task_contract.md explains the rules.
"""
