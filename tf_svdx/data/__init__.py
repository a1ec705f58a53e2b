"""Labels, corpora and the input pipeline. Importing this package does not import TensorFlow."""

from tf_svdx.data.corpus import Track, read_corpus
from tf_svdx.data.lab import frame_labels, read_lab

__all__ = ["Track", "frame_labels", "read_corpus", "read_lab"]
