"""Benchmarks behind the speed targets (``stseg bench``), kept out of unit tests."""
