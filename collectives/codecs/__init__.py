"""Payload codecs (BF16, FP8, LogFMT-nBit): encode to wire bytes, decode, wire sizes."""
