"""``nn.Module`` layers: parameters + reshaping + one call into :mod:`..functional`."""

from .attention import NAMAttention

__all__ = ["NAMAttention"]
