"""The example's function: it stores each order event it is sent."""

from __future__ import annotations

import os
from typing import Any

import boto3

TABLE = boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"])


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    order = event["detail"]
    TABLE.put_item(Item={"pk": f"ORDER#{order['id']}", "sk": "ORDER", **order})
    return {"stored": order["id"]}
