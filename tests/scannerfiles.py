"""Scanner files for tests: bedside-brain with another mean acceptance, name or extra tables."""

from __future__ import annotations

from pathlib import Path

from hw import load_scanner


def brain_variant(path: Path, extra: str, crystal_efficiency: float,
                  name: str | None = None) -> Path:
    """Write bedside-brain's definition to ``path`` with ``[response] crystal_efficiency``, the
    scanner's ``name`` (a name of its own: commands over its runs then load this file, not the
    built-in) and ``extra`` appended; returns ``path``. An ``extra`` with a ``[crystals]`` table
    of its own replaces the shipped one."""
    text = Path(load_scanner("bedside-brain").source).read_text()
    if "[crystals]" in extra:
        text = without_table(text, "crystals")
    assert "crystal_efficiency = 0.95" in text and 'name = "bedside-brain"' in text
    text = text.replace("crystal_efficiency = 0.95", f"crystal_efficiency = {crystal_efficiency}")
    if name is not None:
        text = text.replace('name = "bedside-brain"', f'name = "{name}"')
    path.write_text(text + extra)
    return path


def without_table(text: str, table: str) -> str:
    """A scanner file's ``text`` without its ``[table]`` (up to the next table)."""
    start = text.index(f"[{table}]")
    end = text.index("\n[", start)
    return text[:start] + text[end + 1:]


def alike_brain(path: Path) -> Path:
    """bedside-brain with every crystal alike (no ``[crystals]``), named ``bedside-ideal``."""
    text = Path(load_scanner("bedside-brain").source).read_text()
    path.write_text(without_table(text, "crystals").replace(
        'name = "bedside-brain"', 'name = "bedside-ideal"'))
    return path
