"""The library around the `covid_chestxray_seg` builder: it turns the recipe into the folder
the Hugging Face Hub serves, publishes it, exports it back to files, checks it and scores
predictions against it; `covid_chestxray_seg_tools.cli` is the `covid-seg` command.

One module per concern (see the project README's layout section). Importing the package
itself loads nothing heavy.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    # pyproject.toml takes the version from the builder's BUILDER_VERSION: the data and the
    # tools that make it carry one number.
    __version__ = version("covid-chestxray-seg")
except PackageNotFoundError:  # imported from a clone that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
