"""MedE2 recipe as a LLaMA-Factory extension.

Importing this package is cheap on purpose: it is imported by a ``.pth`` hook in every Python
process, and registers into LLaMA-Factory only when LLaMA-Factory itself is imported.
"""

__version__ = "0.1.0"
