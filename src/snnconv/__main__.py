import sys

from snnconv.cli import main

sys.exit(main())
