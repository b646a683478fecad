"""Tests of the benchmarks layer."""
