"""`python -m vidkv_analysis` entry point."""

import sys

from .cli import main

sys.exit(main())
