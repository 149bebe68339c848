"""`python -m lab`: the same as `vobox-lab`."""
import sys

from lab.cli import main

sys.exit(main())
