"""Running a suite: suite files, planning, the runner, the worker and the executors."""
