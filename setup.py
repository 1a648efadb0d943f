"""Package list for setuptools: `src/daedalus` is the core, `adapters/` is `daedalus.adapters`."""

from setuptools import find_packages, setup

core = ["daedalus", *(f"daedalus.{p}" for p in find_packages("src/daedalus"))]
adapters = ["daedalus.adapters", *(f"daedalus.adapters.{p}" for p in find_packages("adapters"))]
setup(packages=core + adapters, package_data={"daedalus": ["py.typed"]})
