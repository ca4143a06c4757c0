"""Independent reference computations that the tests check the suite against and the benchmarks
time it against: plain per-example loops written from the spec, never the vectorised code."""
