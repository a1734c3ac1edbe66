"""Measuring one step: the timing loop, its statistics, memory probes, devices and peaks."""
