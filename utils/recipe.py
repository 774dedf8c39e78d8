"""How a loaded dataset can be rebuilt on any node (a unit sent to a Ray worker travels as its recipe)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from utils.data import Dataset, load_dataset, stratified_subset
from utils.zca import zca_whiten


@dataclass(frozen=True)
class DataRecipe:
    """How to rebuild a dataset on any node: load `name` from `root`, then apply `steps` in order
    (`("test", n, seed)`: a stratified test subset of n images; `("zca",)`: ZCA whitening)."""

    name: str
    root: str | None
    im_size: int | None = None
    steps: tuple[tuple, ...] = ()

    def then(self, *step) -> DataRecipe:
        """This recipe followed by one more step."""
        return DataRecipe(self.name, self.root, self.im_size, (*self.steps, tuple(step)))

    def build(self) -> Dataset:
        """Load and transform the dataset (memoised per process: a worker loads each dataset once)."""
        if self not in _LOADED:
            data = load_dataset(self.name, self.root, self.im_size)
            for step in self.steps:
                if step[0] == "test":
                    data.x_test, data.y_test = stratified_subset(data.x_test, data.y_test, step[1], step[2])
                elif step[0] == "zca":
                    data = zca_whiten(data)
                else:
                    raise ValueError(f"unknown data recipe step {step!r}; allowed: ('test', n, seed), ('zca',)")
            if len(_LOADED) >= 2:
                _LOADED.popitem(last=False)
            _LOADED[self] = data
        return _LOADED[self]


_LOADED: OrderedDict[DataRecipe, Dataset] = OrderedDict()


def set_recipe(data: Dataset, recipe: DataRecipe) -> Dataset:
    """Record how `data` can be rebuilt from the data root; returns `data`."""
    data._recipe = recipe
    return data


def derive(derived: Dataset, source: Dataset, *step) -> Dataset:
    """Record that `derived` is `source` followed by `step` (when `source` has a recipe); returns `derived`."""
    recipe = recipe_of(source)
    return derived if recipe is None else set_recipe(derived, recipe.then(*step))


def recipe_of(data: Dataset) -> DataRecipe | None:
    """The recipe recorded for `data` (None for a dataset built in memory)."""
    return getattr(data, "_recipe", None)
