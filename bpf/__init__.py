"""BPF C sources, shipped as package data."""

from importlib.resources import files


def source(name: str) -> str:
    """Return the text of ``bpf/<name>`` as installed with the package."""
    return files(__name__).joinpath(name).read_text()
