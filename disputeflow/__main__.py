"""`python -m disputeflow ...` runs the CLI."""

import sys

from disputeflow.cli import main

sys.exit(main())
