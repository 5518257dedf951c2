"""Private implementation of :mod:`slt`. Public names are re-exported from ``slt`` and its subpackages."""
