"""The web console and the Web API of Barbeque on Kubernetes.

One FastAPI application serves both: the cookpad/barbeque-compatible Web API under
``/v1`` and ``/v2``, and server-rendered console pages. Reads come from a watch-backed
in-memory cache of the custom resources and from S3; writes go to SQS and the
Kubernetes API.
"""

from barbeque_dashboard.app import create_app

__all__ = ["create_app"]
