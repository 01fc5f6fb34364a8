import sys

from bench.scaling.cli import main

sys.exit(main())
