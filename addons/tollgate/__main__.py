"""`python -m tollgate …`: the `tollgate` command."""

import sys

from tollgate.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
