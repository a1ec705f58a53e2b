"""tf_svdx: explain what a singing-voice detector has learned, the TensorFlow way."""

__version__ = "0.1.0"
