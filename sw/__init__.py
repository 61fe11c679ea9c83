"""samhw software side: models, quantization, evaluation (torch) and the CLI."""

__version__ = "0.1.0"
