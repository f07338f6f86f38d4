"""attncomp: learned image compression with channel attention, on CompressAI."""

from . import compressai_adapter

# before anything imports compressai: its point-cloud, dataset and scipy imports are deferred to their first use
compressai_adapter.install()

__version__ = "0.1.0"
