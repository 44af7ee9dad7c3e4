"""Converts an official HA-CM or MAMP PyTorch checkpoint into a hacm_tf run directory.

  python scripts/convert_checkpoint.py --input=checkpoint-399.pth --model=pretrainer --method=hacm \
      --output=runs/hacm_official
  python scripts/convert_checkpoint.py --input=state.npz --model=linear --method=hacm --num_classes=60 \
      --class_names_file=ntu60_class_names.txt --output=runs/hacm_official_linprobe

``--input`` is a .pth (needs torch; the state dict under key ``model``) or a .npz whose array names are the
state-dict keys. The output directory (config.json + checkpoints/) is accepted by --pretrained (pretrainer),
export.py and evaluate.py (classifiers). Unused and missing keys are reported.
"""

import json

from absl import flags

from hacm_tf import cli
from hacm_tf.config import ModelConfig

flags.DEFINE_string("input", None, "Official checkpoint: .pth or .npz of state-dict arrays.", required=True)
flags.DEFINE_string("output", None, "Run directory to write.", required=True)
flags.DEFINE_enum("model", "pretrainer", ["pretrainer", "linear", "finetune"], "What the checkpoint holds.")
flags.DEFINE_integer("num_classes", 60, "Classifier classes.")
flags.DEFINE_string("class_names_file", None, "Class names, one per line (classifiers).")
flags.DEFINE_bool("strict", True, "Fail when the state dict lacks a weight the model needs.")
cli.define_config_flags(ModelConfig)
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from hacm_tf import convert
    from hacm_tf.data.build import class_names_from_file

    explicit = {k: v for k, v in cli.config_from_flags(ModelConfig, FLAGS).to_dict().items()
                if FLAGS[k].present and k != "method"}
    config = convert.official_model_config(FLAGS.method, **explicit)
    names = class_names_from_file(FLAGS.class_names_file, FLAGS.num_classes) if FLAGS.model != "pretrainer" else None
    result = convert.convert_to_run(FLAGS.input, FLAGS.output, FLAGS.model, config, FLAGS.num_classes, names,
                                    FLAGS.strict)
    print(json.dumps(result))

if __name__ == "__main__":
    cli.run(main)
