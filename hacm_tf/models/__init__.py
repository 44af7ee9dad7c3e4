"""Keras models: the skeleton encoder, the masked pretrainers and the action classifier."""
