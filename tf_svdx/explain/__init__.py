"""Explanations of the detector; so far the Fréchet distance used to judge them."""

from tf_svdx.explain.frechet import frechet_distance

__all__ = ["frechet_distance"]
