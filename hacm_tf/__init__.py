"""hacm_tf: HA-CM, MAMP and MAE self-supervised skeleton action recognition in TensorFlow 2 / Keras 3."""

__version__ = "0.1.0"
