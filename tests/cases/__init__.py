"""The shared failure cases, copied into the repository so CI reads them from the clone."""
from pathlib import Path

CASES = Path(__file__).resolve().parent


def case(name: str) -> Path:
    """The path of a case file; FileNotFoundError naming it when missing."""
    path = CASES / name
    if not path.exists():
        raise FileNotFoundError(f"tests/cases/{name} is missing")
    return path
