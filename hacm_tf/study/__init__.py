"""Accuracy studies: pretrain with each method / ablation and several seeds, then the frozen
read-outs (kNN, logistic regression), linear probe, fine-tune and 10 %-label semi-supervised
fine-tune; mean +- std tables with the raw-coordinate baseline beside them.

Every run has its own workdir under the study folder, so an interrupted study resumes (complete
runs are reused; an interrupted pretraining continues from its last checkpoint). ``config``: variants,
presets and the configs of each stage; ``runner``: running the chains; ``report``: tables, figure and
results files; ``records``: histories, progress and time left.
"""

from hacm_tf.study.config import (CONVERGED_VARIANTS, RAW, STUDY_PROTOCOLS, VARIANTS, StudyConfig,  # noqa: F401
                                  compute_config, configure, model_config, prepare_data, pretrain_config,
                                  protocol_configs)
from hacm_tf.study.report import report_study, run_plan, table  # noqa: F401
from hacm_tf.study.runner import raw_baseline, run_study  # noqa: F401
