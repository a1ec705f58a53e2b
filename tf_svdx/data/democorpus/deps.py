"""What the corpus builder needs from the system, checked up front with one-line messages that
name the package to install."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
from pathlib import Path

from tf_svdx.errors import MissingDependencyError


@dataclasses.dataclass(frozen=True)
class Requirement:
    kind: str  # "program" | "path" | "python"
    name: str  # executable, file/folder, or importable module
    package: str  # what to install
    via: str = "debian"  # "debian" | "pip"
    purpose: str = ""

    def present(self) -> bool:
        if self.kind == "program":
            return shutil.which(self.name) is not None
        if self.kind == "path":
            return Path(self.name).exists()
        return importlib.util.find_spec(self.name) is not None

    def message(self) -> str:
        what = {"program": f"program {self.name!r}", "path": self.name,
                "python": f"Python module {self.name!r}"}[self.kind]
        how = (f"install the Debian package {self.package} (apt-get install {self.package})"
               if self.via == "debian" else
               f"install the Python package {self.package} (pip install {self.package})")
        why = f" (needed for {self.purpose})" if self.purpose else ""
        return f"{what} not found{why}: {how}"


def check(requirements: list[Requirement]) -> None:
    """Raise MissingDependencyError for the first missing requirement."""
    for requirement in requirements:
        if not requirement.present():
            raise MissingDependencyError(requirement.message())
