"""Python SDK for the Barbeque Web API."""
