"""Sequence-level training: candidates decoded by the model itself, their costs against the reference, and the
risk / ranking losses over them (docs/method.md §8). Pure tensor functions; the fairseq criteria that use them
are in :mod:`fairseq_eb.criterions.sequence_level`."""
