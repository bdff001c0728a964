"""The light client: retries that honour Retry-After, the async twin, the CLI's habits."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from barbeque_client import AsyncClient, Client, Retry, ServiceUnavailable, __version__
from barbeque_client import cli as client_cli
from barbeque_client.client import retry_after

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PENDING = {"message_id": "m-1", "status": "pending", "id": None}


def scripted(*answers: httpx.Response | Exception) -> tuple[httpx.MockTransport, list[str]]:
    """A transport answering each request with the next answer; the last one repeats."""
    remaining = list(answers)
    methods: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        methods.append(request.method)
        answer = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.MockTransport(handler), methods


def sync_client(transport: httpx.MockTransport, slept: list[float]) -> Client:
    return Client(
        "http://barbeque.test", transport=transport, application="shop", sleep=slept.append
    )


def test_a_429_is_retried_after_the_seconds_the_server_asked_for() -> None:
    transport, methods = scripted(
        httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(201, json=PENDING)
    )
    slept: list[float] = []
    with sync_client(transport, slept) as sdk:
        assert sdk.enqueue("SendMail", {}) == "m-1"
    assert methods == ["POST", "POST"]
    assert slept == [7.0]


def test_a_503_on_a_post_is_retried_with_backoff_then_given_up() -> None:
    transport, methods = scripted(httpx.Response(503, json={"message": "SQS is down"}))
    slept: list[float] = []
    policy = Retry(attempts=3, backoff=0.5, max_backoff=10)
    with (
        Client("http://b.test", transport=transport, application="shop", retry=policy,
               sleep=slept.append) as sdk,
        pytest.raises(ServiceUnavailable, match="SQS is down"),
    ):  # fmt: skip
        sdk.enqueue("SendMail", {})
    assert methods == ["POST"] * 3
    assert len(slept) == 2
    # Full jitter: a random wait under base * 2**n.
    assert 0 <= slept[0] <= 0.5
    assert 0 <= slept[1] <= 1.0


def test_a_post_that_may_have_arrived_is_never_sent_twice() -> None:
    transport, methods = scripted(httpx.ReadTimeout("no answer"), httpx.Response(201, json=PENDING))
    slept: list[float] = []
    with sync_client(transport, slept) as sdk, pytest.raises(ServiceUnavailable):
        sdk.enqueue("SendMail", {})
    assert methods == ["POST"]


def test_a_post_that_never_connected_is_retried() -> None:
    transport, methods = scripted(httpx.ConnectError("refused"), httpx.Response(201, json=PENDING))
    slept: list[float] = []
    with sync_client(transport, slept) as sdk:
        assert sdk.enqueue("SendMail", {}) == "m-1"
    assert methods == ["POST", "POST"]


def test_an_idempotent_get_is_retried_after_a_read_timeout_or_502() -> None:
    body = {"message_id": "m", "status": "running", "id": "m"}
    transport, methods = scripted(
        httpx.ReadTimeout("slow"), httpx.Response(502), httpx.Response(200, json=body)
    )
    slept: list[float] = []
    with sync_client(transport, slept) as sdk:
        assert sdk.status("m").status == "running"
    assert methods == ["GET"] * 3


def test_a_500_is_not_retried() -> None:
    transport, methods = scripted(httpx.Response(500))
    with sync_client(transport, []) as sdk, pytest.raises(ServiceUnavailable):
        sdk.status("m")
    assert methods == ["GET"]


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after(httpx.Response(429, headers={"Retry-After": "3"})) == 3.0
    past = httpx.Response(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert retry_after(past) == 0.0
    assert retry_after(httpx.Response(503)) is None
    capped = Retry(max_retry_after=5).delay(0, httpx.Response(429, headers={"Retry-After": "99"}))
    assert capped == 5.0


async def test_the_async_client_retries_and_answers_the_same() -> None:
    answers = [httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(201, json=PENDING)]
    methods: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        methods.append(request.method)
        return answers.pop(0)

    async with AsyncClient(
        "http://b.test", transport=httpx.MockTransport(handler), application="shop"
    ) as sdk:
        assert await sdk.enqueue("SendMail", {"a": 1}) == "m-1"
    assert methods == ["POST", "POST"]


def test_the_package_is_typed_and_light() -> None:
    package = ROOT / "client" / "barbeque_client"
    assert (package / "py.typed").exists()
    # Only httpx and PyYAML: nothing of the operator, importable without it.
    project = (ROOT / "client" / "pyproject.toml").read_text()
    assert 'dependencies = ["httpx>=0.27", "pyyaml>=6"]' in project
    imports = subprocess.run(
        [sys.executable, "-c", "import sys, barbeque_client.cli, barbeque_client;"
         "print(sorted(m for m in sys.modules if m.split('.')[0] in "
         "('barbeque', 'kopf', 'boto3', 'kubernetes', 'fastapi')))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert imports.stdout.strip() == "[]"


# -- the CLI ------------------------------------------------------------------------------------


def every_parser(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += every_parser(sub)
    return found


@pytest.mark.parametrize("prog", ["barbeque-client", "kubectl barbeque"])
def test_every_option_and_argument_has_help(prog: str) -> None:
    for parser in every_parser(client_cli.build_parser(prog)):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"{parser.prog}: {action.dest} has no help"


def test_every_listing_and_show_command_takes_o(capsys: pytest.CaptureFixture[str]) -> None:
    parser = client_cli.build_parser()
    for command in ("status", "executions", "enqueue", "retry", "cancel", "wait"):
        extra = ["Job"] if command == "enqueue" else ["m"]
        if command == "executions":
            extra = []
        for output in client_cli.OUTPUTS:
            args = parser.parse_args([command, *extra, "-o", output])
            assert args.output == output
    with pytest.raises(SystemExit) as usage:
        parser.parse_args(["executions", "-o", "xml"])
    assert usage.value.code == client_cli.EXIT_USAGE
    assert "invalid choice" in capsys.readouterr().err


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        client_cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"barbeque-client {__version__}"


def test_exit_codes_never_mix_outcomes() -> None:
    codes = [
        client_cli.EXIT_OK,
        client_cli.EXIT_FAILED,
        client_cli.EXIT_USAGE,
        client_cli.EXIT_TIMEOUT,
        client_cli.EXIT_API,
    ]
    assert codes == [0, 1, 2, 3, 4]


def test_a_message_that_is_not_json_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = client_cli.main(["enqueue", "Job", "{not json", "-a", "shop", "--url", "http://x:9"])
    assert code == client_cli.EXIT_USAGE
    assert "MESSAGE must be JSON" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash")
def test_bash_completion_completes_commands_options_and_formats(tmp_path: Path) -> None:
    script = client_cli.completion_script(
        client_cli.build_parser("kubectl barbeque"), "bash", "kubectl barbeque"
    )
    (tmp_path / "completion.bash").write_text(script)

    def complete(*words: str) -> list[str]:
        line = " ".join(words)
        program = (
            f"source {tmp_path / 'completion.bash'}\n"
            f"COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}\n"
            "_kubectl_barbeque; printf '%s\\n' \"${COMPREPLY[@]}\"\n"
        )
        result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
        return result.stdout.split()

    assert complete("kubectl-barbeque", "en") == ["enqueue"]
    assert set(complete("kubectl-barbeque", "")) >= {"enqueue", "logs", "retry", "cancel", "wait"}
    assert "--follow" in complete("kubectl-barbeque", "logs", "--f")
    assert complete("kubectl-barbeque", "executions", "-o", "") == list(client_cli.OUTPUTS)
    assert "complete -F _kubectl_barbeque kubectl-barbeque" in script


def test_the_application_defaults_to_the_kube_contexts_namespace(tmp_path: Path) -> None:
    config = {
        "current-context": "shop-ctx",
        "contexts": [
            {"name": "shop-ctx", "context": {"cluster": "c", "namespace": "shop"}},
            {"name": "bare", "context": {"cluster": "c"}},
        ],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))  # JSON is YAML
    assert client_cli.kube_namespace(str(path)) == "shop"
    assert client_cli.kube_namespace(str(path), context="bare") == "default"
    assert client_cli.kube_namespace(str(tmp_path / "missing")) is None
