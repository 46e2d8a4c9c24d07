"""hac: human-aligned compression as a defence for image classifiers, measured honestly.

Data flows one way: image -> [0, 1] tensor -> (attack) -> purify -> classify -> metrics.
Every stage takes and returns [0, 1] RGB tensors of shape (N, 3, H, W).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
