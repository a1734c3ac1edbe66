"""Run folders to a DataFrame: the store, and the readers plugged into it
(pytest-benchmark JSON)."""
