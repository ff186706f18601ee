"""The AWS-side failures an operator can cause or meet, each said in one line with what to do.

The operator commands (``pipeline send|dead-letters|redrive|counts|smoke``) call AWS through
boto3. What botocore raises before a request is answered (no profile, no region, no
credentials, an SSO session that expired, no network, a time-out) and what AWS answers with an
error (a denied ``AssumeRole``, expired or unknown credentials, a stack or queue that does not
exist, throttling the SDK's retries did not outlast) become one line here; anything else keeps
AWS's own code and message, still in one line.

The error codes are AWS's: STS's ``AccessDenied``, ``ExpiredToken`` and
``InvalidClientTokenId`` (https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html),
CloudFormation's ``ValidationError`` for a stack that does not exist, SQS's
``AWS.SimpleQueueService.NonExistentQueue`` (``QueueDoesNotExist`` in the JSON protocol,
https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ReceiveMessage.html),
and the throttling codes botocore's retry handler itself retries
(https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html).
"""

from __future__ import annotations

from botocore import exceptions as botocore_errors

from pipeline_tools import runtime_source

#: Throttling codes, as botocore's retry handler lists them: one definition with the stages'
#: in-process retries (``lambda_src/pipeline_common/retries.py``, loaded by path), less
#: DynamoDB's transaction conflict. The SDK has retried them already when they reach a command.
THROTTLING = runtime_source.load("pipeline_common/retries.py").TRANSIENT_ERROR_CODES - {
    "TransactionConflictException"
}
EXPIRED = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired"})
UNKNOWN_CREDENTIALS = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "AuthFailure",
    }
)
DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
NO_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


def explain(error: Exception, *, stack: str, region: str | None) -> str | None:
    """``error`` as one line naming what to do; ``None`` for an error that is not AWS's."""
    if isinstance(error, botocore_errors.ClientError):
        return _answered(error, stack=stack, region=region)
    if isinstance(error, botocore_errors.BotoCoreError):
        return _unanswered(error)
    return None


def _unanswered(error: botocore_errors.BotoCoreError) -> str:
    """What botocore raises before AWS answers: configuration, credentials, the network."""
    fields = getattr(error, "kwargs", {})
    if isinstance(error, botocore_errors.ProfileNotFound):
        return (
            f"AWS profile {fields.get('profile')!r} is not in your AWS config: check AWS_PROFILE "
            "(`aws configure list-profiles` lists the profiles)"
        )
    if isinstance(error, botocore_errors.SSOError | botocore_errors.TokenRetrievalError):
        return (
            "your AWS SSO session has expired or was never started: run `aws sso login` with "
            "the same profile, then the command again"
        )
    if isinstance(error, botocore_errors.NoRegionError):
        # boto3 reads AWS_DEFAULT_REGION, not AWS_REGION (boto3's configuration guide,
        # https://boto3.amazonaws.com/v1/documentation/api/latest/guide/configuration.html).
        return "no AWS region: set AWS_DEFAULT_REGION, or a region in your profile"
    if isinstance(
        error, botocore_errors.NoCredentialsError | botocore_errors.PartialCredentialsError
    ):
        return "no AWS credentials: set AWS_PROFILE, or run `aws configure` / `aws sso login`"
    if isinstance(error, botocore_errors.CredentialRetrievalError):
        return f"your AWS credentials could not be fetched ({error}): check the profile's source"
    return _network(error, str(fields.get("endpoint_url", "AWS")))


def _network(error: botocore_errors.BotoCoreError, endpoint: str) -> str:
    if isinstance(error, botocore_errors.ReadTimeoutError | botocore_errors.ConnectionClosedError):
        return (
            f"{endpoint} did not answer in time: run the command again (a record sent or "
            "redriven twice is stored once; `dead-letters` and `counts` show where records are)"
        )
    if isinstance(
        error, botocore_errors.EndpointConnectionError | botocore_errors.ConnectTimeoutError
    ):
        return (
            f"cannot reach {endpoint}: check your network (and AWS_ENDPOINT_URL, if set), then "
            "run the command again"
        )
    return f"AWS SDK error: {error}"


#: What to say for an error code AWS answered with: (codes, line); the line may name the
#: operation, the stack, the region and AWS's message.
ANSWERS: tuple[tuple[frozenset[str], str], ...] = (
    (EXPIRED, "your AWS credentials have expired: run `aws sso login`, or get new ones"),
    (
        UNKNOWN_CREDENTIALS,
        "AWS does not accept your credentials ({code}): check AWS_PROFILE and its keys",
    ),
    (
        NO_QUEUE,
        "the dead-letter queue of {stack!r} does not exist: the stack is being deleted or was "
        "changed by hand; deploy it again",
    ),
    (
        THROTTLING,
        "AWS throttled {operation} after the SDK's retries: wait a minute and run the command "
        "again (send: a lower --parallel)",
    ),
    (DENIED, "{operation} was denied ({message}): your identity needs that permission"),
)


def _answered(error: botocore_errors.ClientError, *, stack: str, region: str | None) -> str:
    """What AWS answered with an error, by its code."""
    code = str(error.response.get("Error", {}).get("Code", ""))
    message = str(error.response.get("Error", {}).get("Message", error))
    operation = error.operation_name
    if operation == "AssumeRole":
        return (
            f"AssumeRole was refused ({code}: {message}): the role's trust policy must allow "
            "your identity, and your identity must be allowed sts:AssumeRole on it"
        )
    if code == "ValidationError" and "does not exist" in message:
        return (
            f"stack {stack!r} does not exist in {region}: deploy it, or pass --stack NAME "
            "(default DataPipeline-dev)"
        )
    fields = {"code": code, "message": message, "operation": operation, "stack": stack}
    for codes, line in ANSWERS:
        if code in codes:
            return line.format(**fields)
    return f"{code or 'AWS error'} in {operation}: {message}"
