"""Barbeque on Kubernetes: a centralized job queue run as a Kubernetes operator."""

__version__ = "0.1.0"
