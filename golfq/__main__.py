"""`python -m golfq ...` is the `golfq` command."""

import sys

from golfq.cli import main

sys.exit(main())
