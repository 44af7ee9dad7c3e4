"""Self-supervised pretraining: HA-CM, MAMP or MAE.

  python scripts/pretrain.py --flagfile=flags/smoke/pretrain_hacm.flags --data_dir=DIR --workdir=runs/x

Every ModelConfig / DataConfig / TrainConfig / ComputeConfig / MonitorConfig field is a flag of the same name (see
--helpfull). --monitor (or --monitor_data_dir=DIR for another labelled dataset) adds a kNN read-out of the frozen
encoder every --monitor_every epochs.
Rerunning the same command resumes from the workdir's last checkpoint.
"""

import json

from absl import flags

from hacm_tf import cli
from hacm_tf.config import ComputeConfig, DataConfig, ModelConfig, MonitorConfig, TrainConfig

cli.define_run_flags()
cli.define_config_flags(ModelConfig)
cli.define_config_flags(DataConfig, skip=("semi_ratio", "semi_stratified"))
cli.define_config_flags(TrainConfig)
cli.define_config_flags(ComputeConfig)
cli.define_config_flags(MonitorConfig)
flags.DEFINE_bool("monitor", False, "kNN monitor on --data_dir's own labels (shorthand for "
                  "--monitor_data_dir=<--data_dir>).")
flags.DEFINE_bool("dry_run", False, "Validate the flags, print the configs as JSON and exit.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    model = cli.config_from_flags(ModelConfig, FLAGS)
    data = cli.config_from_flags(DataConfig, FLAGS)
    train = cli.config_from_flags(TrainConfig, FLAGS)
    compute = cli.compute_from_flags(FLAGS)
    monitor = cli.config_from_flags(MonitorConfig, FLAGS, **(
        {"monitor_data_dir": FLAGS.data_dir or ""} if FLAGS.monitor and not FLAGS.monitor_data_dir else {}))
    if FLAGS.dry_run:
        print(json.dumps({"model": model.to_dict(), "data": data.to_dict(), "train": train.to_dict(),
                          "compute": compute.to_dict(), "monitor": monitor.to_dict()}))
        return
    strategy = cli.start_run(FLAGS)
    from hacm_tf.training.pretrain import pretrain

    final = pretrain(FLAGS.workdir, FLAGS.data_dir, model, data, train, strategy, FLAGS.seed, monitor=monitor,
                     compute=compute)
    print(json.dumps(final))


if __name__ == "__main__":
    cli.run(main)
