"""sockact benchmarks: programs that print figures (never run by the test suite as timings)."""
