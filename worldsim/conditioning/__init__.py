"""Conditioning schemes: ControllerState -> per-frame condition (and recorded actions -> the same condition)."""

from worldsim.conditioning.encodings import ENCODINGS, CameraEncodingConfig, KeysEncodingConfig
from worldsim.conditioning.scheme import Condition, Scheme, load_scheme, parse_encoding, shipped_schemes

__all__ = ["ENCODINGS", "CameraEncodingConfig", "Condition", "KeysEncodingConfig", "Scheme", "load_scheme",
           "parse_encoding", "shipped_schemes"]
