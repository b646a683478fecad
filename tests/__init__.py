"""The test suite: one folder per package and layer (see ARCHITECTURE.md "Tests")."""
