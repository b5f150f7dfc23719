"""Write docs/reference/config.md, the config reference, from src/memsweep/schema.py and configs/
(memsweep.reference). tests/test_docs.py fails when the committed page differs from what this writes.

    PYTHONPATH=src python scripts/config_reference.py
"""
from pathlib import Path

from memsweep import config, reference

PAGE = Path(__file__).resolve().parents[1] / "docs" / "reference" / "config.md"


def main() -> None:
    PAGE.write_text(reference.page(config.option_defaults(), config.option_notes()), encoding="utf-8")
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
