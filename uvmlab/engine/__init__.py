"""Drives a workload through the modeled driver and advances simulated time."""
