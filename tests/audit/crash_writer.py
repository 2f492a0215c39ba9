"""Child process for the crash tests: writes audit records forever, printing each published seq.

``python -m tests.audit.crash_writer FOLDER`` prints ``acked N`` after every ``write()`` that
returned, i.e. for every record the module docstring of inspector.audit.h5log calls published.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from inspector.audit.h5log import AuditWriter
from inspector.config.log import LogSpec
from tests.audit.conftest import make_record


def main(folder: str) -> None:
    rng = np.random.default_rng()
    writer = AuditWriter(Path(folder), LogSpec(heatmap_px=8, fsync_interval_s=None), embedding_dim=16)
    seq = writer.last_seq
    print(f"start {seq}", flush=True)
    while True:
        batch = []
        for _ in range(int(rng.integers(1, 5))):
            seq += 1
            batch.append(make_record(seq, verdict="NG" if seq % 3 == 0 else "OK", with_frame=seq % 3 == 0,
                                     time_ns=time.time_ns()))
        writer.write(batch)
        if seq % 7 == 0:
            writer.log_event("threshold", "test", f"after {seq}", 0.5, 0.6)
        print(f"acked {seq}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
