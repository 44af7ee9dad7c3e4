"""Raw dataset readers, TFRecord storage and the tf.data input pipeline."""

# raw formats that data.build turns into TFRecords
SOURCES = ("ntu60", "ntu120", "pku1", "pku2", "npz", "ucla", "arrays", "synthetic")
