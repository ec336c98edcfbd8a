"""The wire shared by firmware, robot computer and learner: serial frames (frames.py), robot<->learner
messages (messages.py) and recordings (recording.py). numpy, msgpack and mcap only: the robot
imports this package, so it must never pull in torch or mujoco. Spec: docs/protocol.md."""
