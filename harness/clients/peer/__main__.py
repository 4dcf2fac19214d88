"""``python -m harness.clients.peer ...``: see :mod:`harness.clients.peer`."""

import sys

from harness.clients.peer.run import main

if __name__ == "__main__":
    sys.exit(main())
