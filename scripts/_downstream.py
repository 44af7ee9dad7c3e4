"""Shared flags and main of scripts/linprobe.py and scripts/finetune.py."""

import json


from absl import flags

from hacm_tf import cli
from hacm_tf.config import ComputeConfig, DataConfig, ModelConfig, TrainConfig


def define_flags():
    cli.define_run_flags()
    flags.DEFINE_string("pretrained", None, "Pretraining run directory or checkpoint prefix (none: from scratch).")
    cli.define_config_flags(ModelConfig)
    cli.define_config_flags(DataConfig)
    cli.define_config_flags(TrainConfig)
    cli.define_config_flags(ComputeConfig)
    from hacm_tf.config import ProtocolConfig

    cli.define_config_flags(ProtocolConfig, skip=("protocol",))
    flags.DEFINE_bool("dry_run", False, "Validate the flags, print the configs as JSON and exit.")


def model_config(FLAGS):
    """The pretrained run's architecture, with flags given explicitly taking precedence."""
    if not FLAGS.pretrained:
        return cli.config_from_flags(ModelConfig, FLAGS)
    from hacm_tf import rundir

    base = rundir.model_config(FLAGS.pretrained).to_dict()
    explicit = {k: v for k, v in cli.config_from_flags(ModelConfig, FLAGS).to_dict().items() if FLAGS[k].present}
    return ModelConfig.from_dict({**base, **explicit})


def main(protocol):
    from hacm_tf.config import ProtocolConfig

    FLAGS = flags.FLAGS
    model = model_config(FLAGS)
    data = cli.config_from_flags(DataConfig, FLAGS)
    if not FLAGS["window"].present and data.window != model.window:
        import dataclasses

        data = dataclasses.replace(data, window=model.window)
    train = cli.config_from_flags(TrainConfig, FLAGS)
    proto = cli.config_from_flags(ProtocolConfig, FLAGS, protocol=protocol)
    compute = cli.compute_from_flags(FLAGS)
    if FLAGS.dry_run:
        print(json.dumps({"model": model.to_dict(), "data": data.to_dict(), "train": train.to_dict(),
                          "protocol": proto.__dict__, "compute": compute.to_dict()}))
        return
    strategy = cli.start_run(FLAGS)
    from hacm_tf.training.downstream import train_classifier

    final = train_classifier(FLAGS.workdir, FLAGS.data_dir, model, data, train, proto, FLAGS.pretrained, strategy,
                             FLAGS.seed, compute)
    print(json.dumps(final))
