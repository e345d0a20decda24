"""worldsim: a real-time interactive world-model game runtime, and the AAPT pipeline that trains its worlds."""

__version__ = "0.1.0"
