"""``barbeque.sdk.client`` is ``barbeque_client.client``."""

from barbeque_client.client import *  # noqa: F403
from barbeque_client.client import Execution as Execution
