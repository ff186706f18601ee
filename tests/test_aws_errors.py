"""Every AWS-side failure an operator can cause or meet is one line on stderr, never a traceback.

Each is run as a user types it: the ``pipeline`` console script from a fresh shell (the user's
PATH, no venv activated), with the failure injected: a profile missing from a temporary
``AWS_CONFIG_FILE``, an SSO profile with no session or an expired one, an endpoint that
refuses connections, closes them unanswered or never answers, and a local stand-in for AWS
that answers each request with the error AWS would send (STS's ``AccessDenied``,
CloudFormation's ``ValidationError`` for a stack that does not exist, ``Throttling`` on every
attempt). The shapes of those answers are the query
protocol's ``ErrorResponse``
(https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/CommonErrors.html).
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore import exceptions as botocore_errors

from pipeline_tools.aws_errors import explain
from tests.conftest import ROOT
from tests.test_readme_commands import ordinary_path

PIPELINE = str(ROOT / ".venv" / "bin" / "pipeline")


def _shell(tmp_path: Path, **variables: str) -> dict[str, str]:
    """A fresh shell's environment: the user's PATH, a HOME with no AWS files, fake keys."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": ordinary_path(),
        "HOME": str(home),
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        **variables,
    }


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PIPELINE, *args], env=env, capture_output=True, text=True, timeout=120, cwd="/"
    )


def _one_line(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


KEYS = {
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS_DEFAULT_REGION": "eu-west-1",
}


def test_a_profile_that_does_not_exist(tmp_path):
    env = _shell(tmp_path, AWS_PROFILE="typo-profile")
    Path(env["AWS_CONFIG_FILE"]).write_text("[profile real]\nregion = eu-west-1\n")
    _one_line(_run(["dead-letters"], env), "'typo-profile'", "list-profiles")


def test_an_sso_profile_with_no_session(tmp_path):
    env = _shell(tmp_path, AWS_PROFILE="sso")
    Path(env["AWS_CONFIG_FILE"]).write_text(
        "[profile sso]\nsso_start_url = https://example.awsapps.com/start\n"
        "sso_region = eu-west-1\nsso_account_id = 123456789012\n"
        "sso_role_name = Operator\nregion = eu-west-1\n"
    )
    _one_line(_run(["dead-letters"], env), "aws sso login")


SSO_PROFILE = "sso_account_id = 123456789012\nsso_role_name = Operator\nregion = eu-west-1\n"
START_URL = "https://example.awsapps.com/start"


def _expired_token(home: Path, key: str) -> None:
    """A token cached by `aws sso login` that has expired: botocore keys the cache by the SHA-1
    of the start URL (legacy profiles) or of the sso-session's name (botocore.utils.
    SSOTokenLoader), under ~/.aws/sso/cache."""
    import hashlib
    import json

    cache = home / ".aws" / "sso" / "cache"
    cache.mkdir(parents=True)
    token = {
        "startUrl": START_URL,
        "region": "eu-west-1",
        "accessToken": "expired",
        "expiresAt": "2020-01-01T00:00:00Z",
    }
    (cache / f"{hashlib.sha1(key.encode()).hexdigest()}.json").write_text(json.dumps(token))


def test_an_sso_profile_whose_session_has_expired(tmp_path):
    env = _shell(tmp_path, AWS_PROFILE="sso")
    Path(env["AWS_CONFIG_FILE"]).write_text(
        f"[profile sso]\nsso_start_url = {START_URL}\nsso_region = eu-west-1\n{SSO_PROFILE}"
    )
    _expired_token(Path(env["HOME"]), START_URL)
    _one_line(_run(["dead-letters"], env), "has expired", "aws sso login")


def test_an_sso_session_profile_whose_token_has_expired(tmp_path):
    """The sso-session form (`aws configure sso` writes it): an expired token with nothing to
    refresh it."""
    env = _shell(tmp_path, AWS_PROFILE="sso")
    Path(env["AWS_CONFIG_FILE"]).write_text(
        f"[profile sso]\nsso_session = corp\n{SSO_PROFILE}"
        f"[sso-session corp]\nsso_start_url = {START_URL}\nsso_region = eu-west-1\n"
    )
    _expired_token(Path(env["HOME"]), "corp")
    _one_line(_run(["dead-letters"], env), "has expired", "aws sso login")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_endpoint_that_refuses_connections(tmp_path):
    """No network, or AWS_ENDPOINT_URL at nothing: one attempt, so the test is quick."""
    endpoint = f"http://127.0.0.1:{_free_port()}"
    env = _shell(tmp_path, **KEYS, AWS_ENDPOINT_URL=endpoint, AWS_MAX_ATTEMPTS="1")
    records = tmp_path / "records.ndjson"
    records.write_text('{"id": "r-1"}\n{"id": "r-2"}\n')
    _one_line(_run(["send", str(records)], env), "cannot reach")


@contextlib.contextmanager
def _stand_in(status: int, code: str, message: str) -> Iterator[str]:
    """A local HTTP server answering every request with AWS's query-protocol error."""
    body = (
        '<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error>'
        f"<Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
    ).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def _endpoint(answer: Any) -> Iterator[str]:
    """A local endpoint whose accepted connections ``answer(connection)`` handles."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []

    def serve() -> None:
        for _ in range(3):
            with contextlib.suppress(OSError):
                connection, _ = listener.accept()
                held.append(connection)
                answer(connection)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        for connection in held:
            connection.close()
        listener.close()


def _hang_up(connection: socket.socket) -> None:
    """Take the whole request, then close without a word. A socket closed with request bytes
    still unread sends a reset instead, which the client may meet while it is still sending
    (the request arrives in more than one segment, and a loaded machine reads the first alone)."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(65536)
        if not chunk:
            break
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    connection.close()


def test_an_endpoint_that_closes_the_connection_unanswered(tmp_path):
    with _endpoint(_hang_up) as endpoint:
        env = _shell(tmp_path, **KEYS, AWS_ENDPOINT_URL=endpoint, AWS_MAX_ATTEMPTS="1")
        _one_line(_run(["dead-letters"], env), "did not answer", "run the command again")


def test_an_endpoint_that_never_answers(tmp_path):
    """A read timeout: the endpoint takes the request and says nothing. botocore waits its
    default 60 s read timeout (https://botocore.amazonaws.com/v1/documentation/api/latest/
    reference/config.html, read_timeout), which no environment variable shortens, so this test
    waits it out once (AWS_MAX_ATTEMPTS=1)."""
    with _endpoint(lambda connection: None) as endpoint:
        env = _shell(tmp_path, **KEYS, AWS_ENDPOINT_URL=endpoint, AWS_MAX_ATTEMPTS="1")
        _one_line(_run(["dead-letters"], env), "did not answer in time", "run the command again")


def test_an_assume_role_that_is_denied(tmp_path):
    denied = "User: arn:aws:iam::123456789012:user/op is not authorized to perform: sts:AssumeRole"
    with _stand_in(403, "AccessDenied", denied) as endpoint:
        env = _shell(tmp_path, **KEYS, AWS_ENDPOINT_URL=endpoint)
        role = "arn:aws:iam::123456789012:role/Smoke"
        _one_line(_run(["--role-arn", role, "dead-letters"], env), "AssumeRole", "trust policy")


def test_a_stack_that_does_not_exist(tmp_path):
    with _stand_in(400, "ValidationError", "Stack with id DataPipeline-x does not exist") as url:
        env = _shell(tmp_path, **KEYS, AWS_ENDPOINT_URL=url)
        _one_line(
            _run(["--stack", "DataPipeline-x", "dead-letters"], env),
            "'DataPipeline-x' does not exist in eu-west-1",
            "--stack",
        )


def test_throttling_that_outlasts_the_sdks_retries(tmp_path):
    with _stand_in(400, "Throttling", "Rate exceeded") as url:
        env = _shell(tmp_path, **KEYS, AWS_ENDPOINT_URL=url, AWS_MAX_ATTEMPTS="2")
        _one_line(_run(["dead-letters"], env), "throttled", "wait a minute")


def test_a_bad_day_is_refused_before_any_aws_call(tmp_path):
    """No region, no credentials: the date is what is wrong, and said first."""
    result = _run(["counts", "--day", "2026-02-30"], _shell(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "'2026-02-30' is not a date as YYYY-MM-DD" in result.stderr
    assert "region" not in result.stderr


def _client_error(code: str, operation: str) -> botocore_errors.ClientError:
    return botocore_errors.ClientError({"Error": {"Code": code, "Message": "m"}}, operation)


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (botocore_errors.ReadTimeoutError(endpoint_url="https://sqs"), "did not answer in time"),
        (botocore_errors.ConnectTimeoutError(endpoint_url="https://sqs"), "cannot reach"),
        (botocore_errors.UnauthorizedSSOTokenError(), "aws sso login"),
        (botocore_errors.NoRegionError(), "AWS_DEFAULT_REGION"),
        (botocore_errors.NoCredentialsError(), "AWS_PROFILE"),
        (_client_error("ExpiredToken", "GetTemplate"), "expired"),
        (_client_error("InvalidClientTokenId", "GetTemplate"), "does not accept"),
        (_client_error("AWS.SimpleQueueService.NonExistentQueue", "ReceiveMessage"), "queue"),
        (_client_error("TooManyRequestsException", "Invoke"), "--parallel"),
        (_client_error("AccessDeniedException", "Invoke"), "Invoke was denied"),
        (_client_error("InternalFailure", "Invoke"), "InternalFailure in Invoke: m"),
    ],
)
def test_each_kind_of_failure_names_what_to_do(error, says):
    line = explain(error, stack="DataPipeline-dev", region="eu-west-1")
    assert line is not None and says in line and "\n" not in line


def test_an_error_that_is_not_aws_is_not_explained_away():
    assert explain(ValueError("bug"), stack="s", region="r") is None
