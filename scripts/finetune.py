"""Fine-tuning (also semi-supervised with --semi_ratio, transfer with another dataset's --pretrained,
and training from scratch without --pretrained): AdamW with layer-wise lr decay, label smoothing,
drop path, MLP head.

  python scripts/finetune.py --flagfile=flags/smoke/finetune.flags --pretrained=runs/pretrain \
      --data_dir=DIR --workdir=runs/finetune
"""



import _downstream

from hacm_tf import cli

_downstream.define_flags()

if __name__ == "__main__":
    cli.run(lambda argv: _downstream.main("finetune"))
