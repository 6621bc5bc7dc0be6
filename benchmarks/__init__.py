"""Speed benchmarks of the toolkit, run by `make bench` (every module here), each from the
repository root as `python -m benchmarks.<name>`."""
