"""The SDK under its server-side name: ``barbeque.sdk`` is ``barbeque_client``.

The code lives in client/barbeque_client (its own light distribution, barbeque-client);
this name stays for code written against the server distribution.
"""

from barbeque_client import *  # noqa: F403
from barbeque_client import __all__ as __all__
