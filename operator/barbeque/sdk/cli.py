"""``barbeque.sdk.cli`` is ``barbeque_client.cli``."""

from barbeque_client.cli import *  # noqa: F403
from barbeque_client.cli import Progress as Progress
from barbeque_client.cli import register as register
