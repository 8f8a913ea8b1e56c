"""``petdaq phantoms``: phantom files written, shown and drawn as a population."""
