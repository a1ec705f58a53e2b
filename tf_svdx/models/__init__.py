"""Models: the singing-voice detector (SPEC §3), its fully-convolutional whole-track twin, and the
WGAN-GP generator and critic (SPEC §4)."""

from tf_svdx.models.dense import (build_dense, copy_weights, dense_logits, predict_track,
                                  probabilities, sliding_window_logits)
from tf_svdx.models.detector import LAYER_NAMES, build_detector, feature_model
from tf_svdx.models.gan import build_critic, build_generator

__all__ = ["LAYER_NAMES", "build_critic", "build_dense", "build_detector", "build_generator",
           "copy_weights", "dense_logits", "feature_model", "predict_track", "probabilities",
           "sliding_window_logits"]
