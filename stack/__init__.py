"""Processes and clients of a running BrainScan, shared by the tests and the benchmarks."""
