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
import os


from absl import flags

from hacm_tf import cli
from hacm_tf.config import DataConfig, ModelConfig

flags.DEFINE_string("input", None, "Official checkpoint: .pth or .npz of state-dict arrays.", required=True)
flags.DEFINE_string("output", None, "Run directory to write.", required=True)
flags.DEFINE_enum("model", "pretrainer", ["pretrainer", "linear", "finetune"], "What the checkpoint holds.")
flags.DEFINE_integer("num_classes", 60, "Classifier classes.")
flags.DEFINE_string("class_names_file", None, "Class names, one per line (classifiers).")
flags.DEFINE_bool("strict", True, "Fail when the state dict lacks a weight the model needs.")
cli.define_config_flags(ModelConfig)
FLAGS = flags.FLAGS

HACM_REFERENCE = dict(hacm_mode="reference")   # the official HA-CM code's behaviour
MAMP_SIZES = dict(window=120, t_patch=4)


def main(argv):
    del argv
    from hacm_tf import convert, rundir
    from hacm_tf.data.build import class_names_from_file

    overrides = {}
    if not FLAGS["hacm_mode"].present and FLAGS.method == "hacm":
        overrides.update(HACM_REFERENCE)
    if FLAGS.method in ("mamp", "mae"):
        overrides.update({k: v for k, v in MAMP_SIZES.items() if not FLAGS[k].present})
    config = cli.config_from_flags(ModelConfig, FLAGS, **overrides)
    state = convert.read_state_dict(FLAGS.input)
    model, report = convert.from_torch_state(state, FLAGS.model, config, FLAGS.num_classes, FLAGS.strict)
    data = DataConfig(window=config.window).to_dict()
    run_config = {"stage": FLAGS.model if FLAGS.model != "pretrainer" else "pretrain", "model": config.to_dict(),
                  "data": data, "converted_from": os.path.abspath(FLAGS.input)}
    if FLAGS.model != "pretrainer":
        from hacm_tf.config import ProtocolConfig

        run_config.update(num_classes=FLAGS.num_classes, protocol=ProtocolConfig(protocol=FLAGS.model).__dict__,
                          class_names=class_names_from_file(FLAGS.class_names_file, FLAGS.num_classes))
    path = rundir.write_converted_run(FLAGS.output, run_config, model)
    print(json.dumps({"output": FLAGS.output, "checkpoint": path, "loaded": len(report.loaded),
                      "unused": report.unused, "missing": report.missing}))


if __name__ == "__main__":
    cli.run(main)
