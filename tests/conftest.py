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



@pytest.fixture(autouse=True, scope="module")
def _hydra_compat_version_base():
    """fairseq 0.12 composes its configs with ``hydra.experimental.initialize``, which Hydra refuses once an
    in-process ``initialize_config_dir(version_base=...)`` (a test of our YAML configs) has set a newer version
    base: give fairseq its compatibility base back after each module, so the suite does not depend on test order."""
    from hydra import version

    yield
    version.VersionBase.instance().setbase(version.__compat_version__)
