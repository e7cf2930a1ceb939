import fairseq_eb
from fairseq_eb.tasks import translation_with_replacement  # noqa: F401

fairseq_eb.register()  # the whole plugin: shims and both components (see fairseq_eb/__init__.py)
