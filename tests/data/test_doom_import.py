"""Without ViZDoom (the [train] extra), recording says how to install it, from PyPI or from a checkout."""

import sys

import pytest

from worldsim.data import doom
from worldsim.errors import WorldsimError


def test_missing_vizdoom_names_the_train_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "vizdoom", None)  # `import vizdoom` now raises ImportError
    for call in (doom._import_vizdoom, doom.shipped_scenarios):
        with pytest.raises(WorldsimError) as err:
            call()
        assert "pip install 'worldsim[train]'" in str(err.value) and 'pip install -e ".[train]"' in str(err.value)
