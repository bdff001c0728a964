"""``python -m barbeque_dashboard``: serve the console and the Web API with uvicorn."""

from __future__ import annotations

import uvicorn

from barbeque import logs
from barbeque.config import Settings, secret_values
from barbeque_dashboard.app import create_app
from barbeque_dashboard.settings import DashboardSettings


def main() -> None:
    base = Settings()
    settings = DashboardSettings()
    logs.configure(base.log_format, secrets=[*secret_values(base), *settings.static_tokens()])
    uvicorn.run(
        create_app(settings=settings, base_settings=base),
        host=settings.dashboard_host,
        port=settings.dashboard_port,
        proxy_headers=True,
        log_level="info",
        # Our root handler formats uvicorn's records too (text or JSON), access log included.
        log_config=None,
    )


if __name__ == "__main__":
    main()
