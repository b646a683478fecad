"""``python -m rank1_integrations.cli`` runs the ``rank1`` command."""

import sys

from . import main

sys.exit(main())
