from fairseq_eb.tasks import translation_with_replacement  # noqa: F401
