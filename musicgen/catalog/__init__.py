"""Bulk generation of a melody catalog: deterministic ids, copy and duplicate filters, atomic writes, resume."""
