"""``python -m gui --config FILE``."""

import logging
import os
import sys

from gui.app import main

code = main()
# The station is stopped and its log sealed by now. Tearing down Qt, torch and h5py at interpreter exit took
# 5-13 s on a loaded line PC, past a service manager's stop timeout: leave at once, output flushed.
logging.shutdown()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
