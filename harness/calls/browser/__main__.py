"""``python -m harness.calls.browser``: one browser side of a call (see driver)."""

import sys

from harness.calls.browser.driver import main

sys.exit(main())
