"""Other digitizers' records (files, ABCD live) into the sorter, with their timing and energy units."""
