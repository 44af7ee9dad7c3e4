"""Run in a fresh process: one training step on 1 device and under MirroredStrategy (2 logical CPUs)
with the same batch and explicit noise; prints the max weight difference as JSON."""

import json
import sys

import numpy as np
import tensorflow as tf

cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

from hacm_tf.config import ModelConfig  # noqa: E402
from hacm_tf.models.pretrainer import MaskedPretrainer  # noqa: E402
from hacm_tf.training.engine import PretrainEngine  # noqa: E402

method = sys.argv[1]
xla = len(sys.argv) > 2 and sys.argv[2] == "xla"
cfg = ModelConfig(method=method, window=24, t_patch=3 if method == "hacm" else 4, dim=32, depth=2, heads=4,
                  decoder_dim=32, decoder_depth=1, decoder_heads=4, cc_weight=0.0).validate()
rng = np.random.RandomState(0)
x = np.cumsum(rng.normal(size=(4, 24, 2, 25, 3)) * 0.05, axis=1).astype(np.float32)
y = np.zeros([4], np.int64)


def step(strategy):
    import keras

    keras.utils.set_random_seed(0)
    with strategy.scope():
        m = MaskedPretrainer(cfg.to_dict(), seed=0)
        m.build()
        opt = keras.optimizers.SGD(0.1)   # linear in the gradient: compares the summed gradients directly
        m.compile(optimizer=opt, engine=PretrainEngine(jit_compile=xla))
        opt.build(m.trainable_variables)
    noise = tuple(np.random.RandomState(1).uniform(size=(4, 2, s[1])).astype(np.float32) for s in m.noise_shapes(8))
    init = [v.numpy() for v in m.trainable_variables]
    ds = tf.data.Dataset.from_tensors((x, y, noise))
    dist = strategy.experimental_distribute_dataset(ds)

    @tf.function
    def run(batch):
        strategy.run(m.train_step, args=(batch,))

    run(next(iter(dist)))
    return init, [v.numpy() for v in m.trainable_variables], float(m.trackers["loss"].result())


init1, one, loss1 = step(tf.distribute.get_strategy())
init2, two, loss2 = step(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
same_init = max(float(np.abs(a - b).max()) for a, b in zip(init1, init2))
update = max(float(np.abs(a - i).max()) for a, i in zip(one, init1))
diff = max(float(np.abs(a - b).max()) for a, b in zip(one, two))
print(json.dumps({"init_diff": same_init, "update": update, "diff": diff, "loss_one": loss1, "loss_two": loss2}))
