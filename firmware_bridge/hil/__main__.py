"""`python -m firmware_bridge.hil`: the HIL harness's command line (cli.py)."""

import sys

from firmware_bridge.hil.cli import main

sys.exit(main())
