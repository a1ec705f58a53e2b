"""Models: the singing-voice detector (SPEC §3) and its fully-convolutional whole-track twin."""

from tf_svdx.models.dense import (build_dense, copy_weights, dense_logits, predict_track,
                                  probabilities, sliding_window_logits)
from tf_svdx.models.detector import LAYER_NAMES, build_detector, feature_model

__all__ = ["LAYER_NAMES", "build_dense", "build_detector", "copy_weights", "dense_logits",
           "feature_model", "predict_track", "probabilities", "sliding_window_logits"]
