"""Linear probe: frozen pretrained encoder, BatchNorm (no affine) + linear head, SGD with cosine decay.

  python scripts/linprobe.py --flagfile=flags/smoke/linprobe.flags --pretrained=runs/pretrain \
      --data_dir=DIR --workdir=runs/linprobe

Reports top-1 / top-5 on the test split every epoch; metrics.json has the last- and best-epoch figures.
"""



import _downstream

from hacm_tf import cli

_downstream.define_flags()

if __name__ == "__main__":
    cli.run(lambda argv: _downstream.main("linear"))
