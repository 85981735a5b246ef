"""`python -m bookbug_assets.cli ...`: the same as the `bookbug` script."""

import sys

from bookbug_assets.cli import main

sys.exit(main())
