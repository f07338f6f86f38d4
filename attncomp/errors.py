"""attncomp's exceptions: every user mistake or bad input ends in one of these."""


class AttncompError(Exception):
    """Base class; the CLIs print its message on one line and exit non-zero."""


class ImageError(AttncompError):
    """An input that is not a usable image."""


class StreamError(AttncompError):
    """A bitstream that is malformed, corrupted or not ours."""


class WeightsError(AttncompError):
    """Unknown model or quality, or a weights/checkpoint file that cannot be used."""
