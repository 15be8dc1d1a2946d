"""``python -m stseg_ros.cli``: the ``stseg`` command."""

import sys

from stseg_ros.cli import main

sys.exit(main())
