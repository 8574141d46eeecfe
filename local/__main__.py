"""`python -m local` runs the local stack (the same as `python -m local.stack`)."""

import sys

from local.stack import main

sys.exit(main())
