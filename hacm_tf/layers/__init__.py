"""Keras layers (subclassed, with get_config)."""
