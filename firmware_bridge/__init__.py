"""Robot computer <-> motor firmware over a serial line (docs/firmware_bridge.md).

Folders by where they run: this package's modules are the robot-side link (`link.SerialLink`:
pyserial on /dev/ttyUSB0, pty paths, socket://, loop://; `recorder`, `console`);
`virtual_robot/` is the stand-in for the robot (MuJoCo with a hidden dynamics profile behind a
pty, speaking the same frames, protocol/frames.py); `hil/` holds the hardware-in-the-loop tools.
Importing this package imports nothing: the robot side pulls in `link` only (no mujoco, no torch).
"""
