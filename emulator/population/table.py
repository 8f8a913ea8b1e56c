"""The population's laws as a markdown table (docs/phantoms.md): ``python -m emulator.population.table``."""

from __future__ import annotations

from emulator.population.head import HEAD
from emulator.population.laws import Parameter
from emulator.population.torso import TORSO


def table(parameters: tuple[Parameter, ...]) -> list[str]:
    lines = ["| parameter | unit | men | women | source |", "|---|---|---|---|---|"]
    for p in parameters:
        men, women = p.men.words(), p.women.words()
        if getattr(p.men, "sd", 1.0) == 0.0:
            men = "none"
        lines.append(f"| `{p.name}` | {p.unit} | {men} | {women} | {p.source} |")
    return lines


def main() -> int:
    for title, parameters in (("torso", TORSO), ("head", HEAD)):
        print(f"### {title}\n")
        print("\n".join(table(parameters)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
