"""``python -m thermonet`` runs the command line."""

import sys

from thermonet.cli import main

sys.exit(main())
