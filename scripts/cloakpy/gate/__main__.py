"""`python3 -m cloakpy.gate`: what scripts/cloakbench gate runs."""

import sys

from .cli import main

sys.exit(main())
