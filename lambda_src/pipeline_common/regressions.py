"""What rolls a release back: the errors a stage did not expect, counted per version.

In this pipeline an error is usually not a regression. The validator rejects a malformed record
by raising (that is how it reaches the DLQ), the processor raises on an id conflict, and a
throttled or conflicting DynamoDB call is raised so that Lambda retries it. A rollback alarm on
Lambda's ``Errors`` would roll back a healthy release whenever a canary meets such a record.

So each stage counts, itself, the errors that mean its code is wrong, in the EMF metric
``Regressions`` with the dimensions ``service`` (the stage) and ``FunctionVersion`` (the
version that ran, ``AWS_LAMBDA_FUNCTION_VERSION``), and the deployment's rollback alarm watches
the new version's count alone:

* a crash: any exception that is neither a contract rejection nor an AWS error;
* an AWS error that is not transient: ``AccessDeniedException``, ``ResourceNotFoundException``,
  a ``ValidationException`` on one of the stage's own requests, a cancelled transaction whose
  reasons include a ``ValidationError``, a request botocore refuses to send;
* a response Lambda could not serialise (it would fail as ``Runtime.MarshalError``).

Transient conditions are never counted (``pipeline_common.retries``: throttling, DynamoDB's
transaction conflicts, an AWS server error, connection errors and timeouts), whether they reach
the handler's end directly or as ``StillTransient`` after the in-process retries. Nor are
rejections and conflicts, which ``pipeline_common.invocation`` counts in ``RecordsRejected``.

The metric exists only in the hours a version regresses: EMF publishes a metric when a line
carries it, so a healthy release adds no custom metric to the bill.
"""

from __future__ import annotations

import os

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from botocore.exceptions import ClientError

from pipeline_common.retries import TRANSIENT_CANCELLATION_REASONS, StillTransient, is_transient

#: The EMF metric and its version dimension (the stage is Powertools' ``service`` dimension).
REGRESSIONS_METRIC = "Regressions"
VERSION_DIMENSION = "FunctionVersion"

#: Cancellation reasons of ``TransactWriteItems`` that ordinary traffic produces: a retry
#: settles them, or (a failed condition) the record is already stored.
EXPECTED_CANCELLATION_REASONS = TRANSIENT_CANCELLATION_REASONS | {"None", "ConditionalCheckFailed"}


def is_regression(error: BaseException) -> bool:
    """Whether ``error``, raised by a stage's handler, means the stage's code is wrong."""
    if isinstance(error, StillTransient) or is_transient(error):
        return False
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code")
        if code == "TransactionCanceledException":
            reasons = {str(r.get("Code")) for r in error.response.get("CancellationReasons") or []}
            return not (reasons and reasons <= EXPECTED_CANCELLATION_REASONS)
        return True
    # Anything else, a botocore refusal (a bad parameter, no credentials, no region) included,
    # is the code's or its configuration's.
    return True


def count_regression() -> None:
    """Publish one ``Regressions`` for the running version, at once (its own EMF line)."""
    with single_metric(name=REGRESSIONS_METRIC, unit=MetricUnit.Count, value=1) as metric:
        metric.add_dimension(
            name=VERSION_DIMENSION, value=os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        )
