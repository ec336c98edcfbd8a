"""`python -m learner.experiments`: see learner.experiments.cli."""

import sys

from learner.experiments.cli import main

sys.exit(main())
