"""``petdaq``, the product's one command: every sub-command's options, typed at the door.

The top floor: it may import every package of the product; nothing imports it. Each module turns
its sub-commands' arguments into the typed settings the layers below take.
"""
