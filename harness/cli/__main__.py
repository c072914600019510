"""`python -m harness.cli`: the same as the `deploy-harness` command."""
import sys

from . import main

sys.exit(main())
