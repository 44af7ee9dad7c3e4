"""Pure tensor functions (no variables): hyperbolic geometry, masking, patching, losses."""
