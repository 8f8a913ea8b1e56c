"""Populations of virtual patients: adult torsos and heads drawn from published laws, as phantom files."""
