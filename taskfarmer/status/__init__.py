"""``farmer --status``, read-only: what a farm's workdir says (:mod:`.model`), and how it is
read (:mod:`.reader`)."""

from .model import FailedTask, FarmerRow, LeaseRow, RunningTask, Status
from .reader import StatusReader

__all__ = ["FailedTask", "FarmerRow", "LeaseRow", "RunningTask", "Status", "StatusReader"]
