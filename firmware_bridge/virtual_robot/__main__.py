"""`python -m firmware_bridge.virtual_robot`: the virtual robot's command line (robot.py)."""

import sys

from firmware_bridge.virtual_robot.robot import main

sys.exit(main())
