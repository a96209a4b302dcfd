"""``python -m crystallize`` runs the command line."""

import sys

from crystallize.cli.main import main

sys.exit(main())
