"""The configs/ folder of the checkout ships inside the package, as memsweep/configs (pyproject.toml holds the
rest of the build's settings). configs/ stays at the top of the repository, where users and docs look for it."""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithConfigs(build_py):
    def run(self):
        super().run()
        if not self.editable_mode:  # an editable install reads configs/ in the checkout (memsweep.config)
            self.copy_tree("configs", str(Path(self.build_lib) / "memsweep" / "configs"))


setup(cmdclass={"build_py": BuildPyWithConfigs})
