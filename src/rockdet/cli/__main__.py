"""`python -m rockdet.cli`: the `rockdet` command."""

import sys

from rockdet.cli.main import main

sys.exit(main())
