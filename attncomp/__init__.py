"""attncomp: learned image compression with channel attention, on CompressAI."""

__version__ = "0.1.0"
