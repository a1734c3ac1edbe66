"""Where worker batches run. Local processes today; the seam is `run_batch`."""
from harness.run.executors.local import Batch, LocalExecutor

__all__ = ["Batch", "LocalExecutor"]
