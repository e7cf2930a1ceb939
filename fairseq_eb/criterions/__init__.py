from fairseq_eb.criterions import label_smoothed_cross_entropy_with_gp  # noqa: F401
