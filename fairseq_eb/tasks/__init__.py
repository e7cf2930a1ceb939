import fairseq_eb
from fairseq_eb.tasks import (  # noqa: F401  (registered by import)
    translation_from_pretrained_bart_with_replacement,
    translation_multi_simple_epoch_with_replacement,
    translation_with_replacement,
)

fairseq_eb.register()  # the whole plugin: shims and both components (see fairseq_eb/__init__.py)
