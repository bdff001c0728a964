"""``python -m barbeque_dashboard``: serve the console and the Web API with uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from barbeque_dashboard.app import create_app
from barbeque_dashboard.settings import DashboardSettings


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("botocore", "urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = DashboardSettings()
    uvicorn.run(
        create_app(settings=settings),
        host=settings.dashboard_host,
        port=settings.dashboard_port,
        proxy_headers=True,
        log_level="info",
    )


if __name__ == "__main__":
    main()
