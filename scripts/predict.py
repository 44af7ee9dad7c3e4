"""Classifies recorded skeleton files with a trained model: top-5 actions per clip.

  python scripts/predict.py --model=exported/hacm --input=recordings/
  python scripts/predict.py --model=runs/finetune --input=a.skeleton,b.skeleton --output=predictions.json
  python scripts/predict.py --model=exported/hacm --input=clip.npy --layout=ntu25

--model: a SavedModel (version folder, or base folder: its highest version) or a linear-probe / fine-tune
run. --input: files or folders of NTU .skeleton, NW-UCLA .json, PKU-MMD skeleton .txt (clips from its label
file, see --labels) or .npy arrays. Files that cannot be read are listed with their reason; the others are
answered. Exit status 1 when no clip could be answered.
"""

import json

from absl import flags

from hacm_tf import cli

flags.DEFINE_string("model", None, "SavedModel (version or base folder) or classifier run directory / checkpoint.",
                    required=True)
flags.DEFINE_list("input", None, "Files or folders to classify (comma-separated).", required=True)
flags.DEFINE_string("output", None, "Also write the predictions as JSON here.")
flags.DEFINE_integer("top_k", 5, "Classes shown per clip.")
flags.DEFINE_string("layout", None, "Joint layout of .npy inputs (default: the model's).")
flags.DEFINE_string("labels", None, "PKU-MMD label file or folder (default: a label folder beside the skeleton "
                    "folder).")
flags.DEFINE_integer("batch_size", 16, "Clips per model call.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from hacm_tf import console
    from hacm_tf.data.tfrecord import atomic_write_text
    from hacm_tf.export import open_model
    from hacm_tf.predict import format_predictions, predict_files

    served = open_model(FLAGS.model)
    console.say(f"model: {served.describe()}")
    result = predict_files(served, FLAGS.input, FLAGS.top_k, FLAGS.layout, FLAGS.labels, FLAGS.batch_size)
    print(format_predictions(result))
    if FLAGS.output:
        atomic_write_text(FLAGS.output, json.dumps(result, indent=1) + "\n")
        console.say(f"predictions written to {FLAGS.output}")
    if not result["predictions"]:
        raise ValueError("no clip could be answered")


if __name__ == "__main__":
    cli.run(main)
