"""musicgen: learn the style of a melody corpus and generate new melodies in a requested style."""

__version__ = "0.1.0"
