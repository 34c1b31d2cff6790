"""Allow `python -m slmshift`."""

import sys

from slmshift.cli import main

sys.exit(main())
