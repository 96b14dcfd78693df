"""`python -m sdviz`: see sdviz.cli."""

import sys

from sdviz.cli import main

sys.exit(main())
