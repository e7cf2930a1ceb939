import pytest

import fairseq_eb
from tests.fairseq_tools import make_toy_corpus

# Importing fairseq_eb is inert; tests that use fairseq in this process need the plugin registered.
# (The fairseq command lines the tests run get it through --user-dir, as users do.)
fairseq_eb.register()


@pytest.fixture(scope="session")
def toy_bin(tmp_path_factory):
    """A binarised toy translation corpus shared by the end-to-end tests (read-only!)."""
    return make_toy_corpus(tmp_path_factory.mktemp("toy"))
