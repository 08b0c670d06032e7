"""``python -m personagate.cli``."""

import sys

from personagate.cli import main

sys.exit(main())
