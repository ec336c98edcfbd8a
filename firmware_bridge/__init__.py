"""Robot computer <-> motor firmware over a serial line, and the virtual firmware (docs/firmware_bridge.md).

`link.SerialLink` is the host side (pyserial: /dev/ttyUSB0, pty paths, socket://, loop://);
`virtual_robot.VirtualRobot` is MuJoCo with a hidden dynamics profile behind a pty, speaking the
same frames (protocol/frames.py). Importing this package imports nothing: the robot side pulls in
`link` only (no mujoco, no torch).
"""
