"""Thin entry points for `ray job submit`: each parses flags and calls the library."""
