"""``python -m harness.calls.peer ...``: see :mod:`harness.calls.peer`."""

import sys

from harness.calls.peer.run import main

if __name__ == "__main__":
    sys.exit(main())
