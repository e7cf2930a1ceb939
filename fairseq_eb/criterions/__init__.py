import fairseq_eb
from fairseq_eb.criterions import label_smoothed_cross_entropy_with_gp, sequence_level  # noqa: F401

fairseq_eb.register()  # the whole plugin: shims and both components (see fairseq_eb/__init__.py)
