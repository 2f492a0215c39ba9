"""CLIP inspection station core: frame -> features -> heads -> decision. Never imports Qt."""

import os

__version__ = "0.1.0"

# Waiting OpenMP workers sleep instead of spinning (docs/speed.md): the inspect thread shares the CPU with
# capture, logging, the GUI and other processes, and spinning workers held the cores those need - torch's
# forward ran 2-8x slower on a loaded 2-core station. libgomp reads this once, when torch loads it, so it
# is set here, before any inspector module imports torch; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
