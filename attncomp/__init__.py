"""attncomp: learned image compression with channel attention, on CompressAI."""

import warnings

with warnings.catch_warnings():
    # compressai imports torch_geometric, whose torch.jit.script calls warn of a deprecation that means
    # nothing to an attncomp user; imported here, first, so that every entry point is quiet
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
    import compressai  # noqa: F401

__version__ = "0.1.0"
