"""Explanations of the detector: compiled activation maximisation (latent and input space), the
real-data reference and Fréchet/KID scoring that selects the optimiser's hyper-parameters."""

from tf_svdx.explain.engine import Explainer, unit_activation
from tf_svdx.explain.frechet import (frechet_1d, frechet_distance, frechet_report,
                                     kernel_inception_distance)
from tf_svdx.explain.reference import (Reference, model_fingerprint, reference_key,
                                       scan_reference)

__all__ = ["Explainer", "Reference", "frechet_1d", "frechet_distance", "frechet_report",
           "kernel_inception_distance", "model_fingerprint", "reference_key", "scan_reference",
           "unit_activation"]
