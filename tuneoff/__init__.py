"""tuneoff: measure prompt engineering against fine-tuning on your own task."""

__version__ = "0.1.0"
