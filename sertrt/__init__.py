"""sertrt: multilingual speech emotion recognition (XLSR + HGFM), from corpus to edge engine."""

__version__ = "0.1.0"
