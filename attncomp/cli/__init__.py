"""Thin command-line front ends: parse, call the library, print one line on error."""

import warnings

# compressai's import triggers torch.jit deprecation notices that mean nothing to a user.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
