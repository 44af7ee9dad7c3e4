"""Raw dataset readers, TFRecord storage and the tf.data input pipeline."""
