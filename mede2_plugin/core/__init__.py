"""Stage-neutral building blocks that every part of the package may use (files, locking)."""
