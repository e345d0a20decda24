import pytest

from worldsim.config import replace
from worldsim.training.recipe import load_recipe


@pytest.fixture(scope="session")
def smoke_recipe(tmp_path_factory):
    """The shipped smoke recipe with its data recorded once into a temporary folder (needs ViZDoom)."""
    pytest.importorskip("vizdoom", reason="the smoke recipe records its data with ViZDoom")
    recipe = load_recipe("smoke")
    data_dir = tmp_path_factory.mktemp("smoke-data") / "data"
    return replace(recipe, data=replace(recipe.data, dir=str(data_dir)))
