"""Audio input: decoding any common format to float32 mono at a chosen rate."""

from polyspeech.audio.io import SAMPLE_RATE, audio_duration, load_audio, write_audio

__all__ = ["SAMPLE_RATE", "audio_duration", "load_audio", "write_audio"]
