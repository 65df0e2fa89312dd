"""Student-facing experiments. Each is runnable as ``python -m experiments.NAME --help``."""
