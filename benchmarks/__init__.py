"""Benchmarks and research tools (the lab): not part of the installed package."""
