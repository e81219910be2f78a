"""pytest-speedrun: the Automated LLM Speedrunning Benchmark as a pytest plugin."""

__version__ = "0.1.0"
