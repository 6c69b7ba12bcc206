"""``farmer --status``, read-only: what a farm's workdir says (:mod:`.model`), and how it is
read (:mod:`.reader`); ``farmer --verify``'s checks (:mod:`.verify`, :mod:`.verify_read`)."""

from .model import FailedTask, FarmerRow, LeaseRow, QuarantinedNode, RunningTask, Status
from .reader import StatusReader
from .verify import Verdict
from .verify_read import verify

__all__ = ["FailedTask", "FarmerRow", "LeaseRow", "QuarantinedNode", "RunningTask", "Status",
           "StatusReader", "Verdict", "verify"]
