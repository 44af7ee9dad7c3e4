"""Fine-tuning (also semi-supervised with --semi_ratio, transfer with another dataset's --pretrained,
and training from scratch without --pretrained): AdamW with layer-wise lr decay, label smoothing,
drop path, MLP head.

  python scripts/finetune.py --flagfile=flags/smoke/finetune.flags --pretrained=runs/pretrain \
      --data_dir=DIR --workdir=runs/finetune
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _downstream  # noqa: E402

from hacm_tf import cli  # noqa: E402

_downstream.define_flags()

if __name__ == "__main__":
    cli.run(lambda argv: _downstream.main("finetune"))
