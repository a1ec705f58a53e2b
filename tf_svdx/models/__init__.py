"""Models: the singing-voice detector (SPEC §3), its fully-convolutional whole-track twin, and the
WGAN-GP generator and critic (SPEC §4).

The detector, generator and critic are backend-neutral Keras 3 models (tools/gan_jax.py trains
the GAN under the JAX backend); the whole-track twin uses TensorFlow and is imported on first use.
"""

from tf_svdx.models.detector import LAYER_NAMES, build_detector, feature_model
from tf_svdx.models.gan import build_critic, build_generator

_DENSE = ("build_dense", "copy_weights", "dense_logits", "predict_track", "probabilities",
          "sliding_window_logits")

__all__ = ["LAYER_NAMES", "build_critic", "build_detector", "build_generator", "feature_model",
           *_DENSE]


def __getattr__(name):
    if name in _DENSE:
        from tf_svdx.models import dense
        return getattr(dense, name)
    raise AttributeError(f"module 'tf_svdx.models' has no attribute {name!r}")
