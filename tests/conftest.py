import pytest

from tests.fairseq_cli import make_toy_corpus


@pytest.fixture(scope="session")
def toy_bin(tmp_path_factory):
    """A binarised toy translation corpus shared by the end-to-end tests (read-only!)."""
    return make_toy_corpus(tmp_path_factory.mktemp("toy"))
