"""Audio input: decoding any supported file to mono float32 at the front end's sample rate."""

from tf_svdx.audio.load import SUPPORTED_EXTENSIONS, AudioInfo, info, load

__all__ = ["SUPPORTED_EXTENSIONS", "AudioInfo", "info", "load"]
