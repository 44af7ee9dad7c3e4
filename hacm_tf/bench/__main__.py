"""``python -m hacm_tf.bench '<spec JSON>'``: one measurement (``suites.measure_one``) in this process,
printed as one JSON line (how a measured suite runs each configuration in its own process)."""

import json
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from hacm_tf.bench.suites import measure_one

    if len(sys.argv) != 2:
        sys.exit("usage: python -m hacm_tf.bench '<spec JSON>'")
    print(json.dumps(measure_one(json.loads(sys.argv[1]))))
