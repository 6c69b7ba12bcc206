"""What the kernel shows of a thread of this process."""

from __future__ import annotations

import threading
from pathlib import Path


def blocked_in(thread: threading.Thread) -> set[int]:
    """The signals ``thread`` blocks, as the kernel shows them (``SigBlk``, a hex mask)."""
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    mask = int(next(line for line in status.splitlines() if line.startswith("SigBlk:"))
               .split()[1], 16)
    return {sig for sig in range(1, 65) if mask & (1 << (sig - 1))}
