"""Tests of the adapters layer."""
