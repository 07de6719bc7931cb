"""asyncssh, imported once without the deprecation warnings its import raises.

asyncssh names DSA (and other old algorithms) of the ``cryptography`` package when it is
imported; recent ``cryptography`` releases warn on that name alone. lbsim's instances never
offer DSA, and a warning at import would be an error wherever warnings are (the tests)."""

from __future__ import annotations

import warnings

from cryptography.utils import CryptographyDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    import asyncssh

__all__ = ["asyncssh"]
