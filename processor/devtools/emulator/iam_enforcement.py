"""IAM enforcement in the embedded emulator, to prove the stack's roles (docs/deploy.md).

moto can check every request against the IAM policies of the credentials it is signed with
(``INITIAL_NO_AUTH_ACTION_COUNT``; off by default, as the emulator normally runs). This module
switches that on and off at run time (``POST /_qm/iam`` with ``{"enforce": true}``: a stack is
deployed and users created first, with enforcement off) and closes three gaps that would
otherwise make moto's checks meaningless or impossible for qm-ingest's roles:

* **Resources of DynamoDB and Kinesis requests.** moto checks SQS and S3 requests against the
  queue's and the object's ARN, but DynamoDB and Kinesis requests against ``*``, so a policy
  naming its tables or streams (least privilege) would be refused everything. Here each
  request is checked against the ARN of every table (or index) and stream it names, as IAM
  does: ``BatchGetItem`` and ``TransactWriteItems`` once per table, ``GetRecords`` against the
  stream its shard iterator belongs to.
* **Pre-signed S3 URLs** (qm-desktop uploads screen recordings through them) carry their
  credentials in the query string; moto reads only the ``Authorization`` header and fails.
  Here the URL's credentials (key and session token) must hold the permission for the action
  and object; the URL's signature itself is not recomputed (say so where it matters).
* **S3 keys that need percent-encoding** (Connect's recording keys hold ``:``): hypercorn hands
  moto the decoded path, and moto signs that, where the client signed the encoded one; here
  the path is encoded again as SDKs encode it before the signature is compared.
* **Inline policies from CloudFormation**: moto's ``AWS::IAM::Role`` stores each inline
  policy as a Python ``repr`` of the document, which its own checks then cannot read as JSON
  (every request of the role was refused); here such a document is read back as the dict it is.
* **A record of every decision** (principal, action, resource, allowed) for the tests:
  ``GET /_qm/iam`` returns it.

What moto does not check at all (so neither does this): KMS key policies, bucket and queue
resource policies, condition keys other than in trust policies, policy variables.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlparse

ROUTE = "/_qm/iam"
MAX_DECISIONS = 200_000

_lock = threading.Lock()
_decisions: list[dict[str, Any]] = []


def enforce(on: bool) -> None:
    """Check every request from now on (``on``) or none (the emulator's normal mode)."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0 if on else float("inf")
    ActionAuthenticatorMixin.request_count = 0


def enforcing() -> bool:
    from moto import settings

    return bool(settings.INITIAL_NO_AUTH_ACTION_COUNT == 0)


def decisions(clear: bool = False) -> list[dict[str, Any]]:
    with _lock:
        taken = list(_decisions)
        if clear:
            _decisions.clear()
    return taken


def _record(principal: str, action: str, resource: str, allowed: bool) -> None:
    with _lock:
        if len(_decisions) < MAX_DECISIONS:
            _decisions.append(
                {"principal": principal, "action": action, "resource": resource, "allowed": allowed}
            )


#: Actions IAM authorises under another name (AWS has no "sqs:DeleteMessageBatch" permission).
IAM_ACTIONS = {
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "s3:HeadObject": "s3:GetObject",
    "s3:HeadBucket": "s3:ListBucket",
}
#: A transaction is authorised as the item actions it holds, each on its own table.
TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


def _dynamodb_resources(handler: Any) -> Iterator[tuple[str, str | None]]:
    params: dict[str, Any] = getattr(handler, "params", None) or {}
    prefix = f"arn:aws:dynamodb:{handler.region}:{handler.current_account}:table/"

    def table(name: str, index: str | None = None) -> str:
        return prefix + name + (f"/index/{index}" if index else "")

    if "TableName" in params:
        yield table(params["TableName"], params.get("IndexName")), None
    for name in params.get("RequestItems") or {}:  # BatchGetItem, BatchWriteItem
        yield table(name), None
    for item in params.get("TransactItems") or []:  # TransactWriteItems, TransactGetItems
        for kind, operation in item.items():
            if isinstance(operation, dict) and "TableName" in operation:
                yield table(operation["TableName"]), TRANSACT_ACTIONS.get(kind, kind)
    if "ResourceArn" in params:  # tags, resource policies
        yield params["ResourceArn"], None


def _kinesis_resources(handler: Any) -> Iterator[tuple[str, str | None]]:
    from moto.kinesis.utils import decompose_shard_iterator

    prefix = f"arn:aws:kinesis:{handler.region}:{handler.current_account}:stream/"
    stream_arn = handler._get_param("StreamARN")
    stream_name = handler._get_param("StreamName")
    consumer_arn = handler._get_param("ConsumerARN")
    iterator = handler._get_param("ShardIterator")
    if stream_arn:
        yield stream_arn, None
    elif stream_name:
        yield prefix + stream_name, None
    elif consumer_arn:
        yield consumer_arn, None
    elif iterator:
        try:
            yield prefix + decompose_shard_iterator(iterator)[0], None
        except (ValueError, IndexError, UnicodeDecodeError):
            yield "*", None


def _sqs_resource(original: Any) -> Any:
    """moto names the queue of GetQueueUrl and CreateQueue ``*`` (it looks up a URL only)."""

    def determine_resource(self: Any) -> str:
        resource: str = original(self)
        name = self._get_param("QueueName")
        if resource == "*" and name:
            return f"arn:aws:sqs:{self.region}:{self.current_account}:{name}"
        return resource

    return determine_resource


@contextmanager
def _json_refusal(code: str, action: str, resource: str) -> Iterator[None]:
    """moto's IAM refusal is XML; DynamoDB, Kinesis and SQS answer current SDKs in JSON, and an
    XML 403 would be an unknown error to them: refuse as those services do."""
    from moto.core.exceptions import JsonRESTError
    from werkzeug.exceptions import HTTPException

    try:
        yield
    except HTTPException as exc:
        if exc.code != 403:
            raise
        raise JsonRESTError(code, f"not authorized to perform {action} on {resource}") from None


def _sqs_json_errors(original: Any) -> Any:
    def authorize(self: Any, resource: str = "*") -> None:
        if not self.headers.get("X-Amz-Target"):  # the query protocol: XML is its language
            original(self, resource)
            return
        with _json_refusal("AccessDenied", self._get_action(), resource):
            original(self, resource)

    return authorize


def _per_resource(resources: Any) -> Any:
    """moto's check (``ActionAuthenticatorMixin._authenticate_and_authorize_action``), once per
    resource the request names, with the action IAM authorises there."""

    def authorize(self: Any, resource: str = "*") -> None:
        from moto import settings
        from moto.core.authorization import ActionAuthenticatorMixin
        from moto.iam.access_control import IAMRequest

        if ActionAuthenticatorMixin.request_count < settings.INITIAL_NO_AUTH_ACTION_COUNT:
            ActionAuthenticatorMixin.request_count += 1
            return
        query = urlparse(self.uri).query
        path = self.raw_path + (f"?{query}" if query else "")
        named = list(dict.fromkeys(resources(self))) or [(resource, None)]
        for index, (arn, action) in enumerate(named):
            request = IAMRequest(
                account_id=self.current_account,
                method=self.method,
                path=path,
                data=self.data,
                body=self.raw_body,
                headers=self.headers,
                action=action or self._get_action(),
            )
            with _json_refusal("AccessDeniedException", action or self._get_action(), arn):
                if index == 0:
                    request.check_signature()
                request.check_action_permitted(arn)

    return authorize


def _s3_authorize(original: Any) -> Any:
    def authorize(self: Any, bucket_name: str | None = None, key_name: str | None = None) -> None:
        if enforcing() and "Authorization" not in self.headers:
            query = parse_qs(urlparse(self.uri).query) or dict(self.querystring)
            if (
                "X-Amz-Credential" not in query and "AWSAccessKeyId" not in query
            ):  # anonymous: every qm-ingest bucket is private
                from moto.s3.exceptions import S3AccessDeniedError

                _record("anonymous", self._get_action(), str(bucket_name), False)
                raise S3AccessDeniedError()
            _check_presigned(self, query, bucket_name, key_name)
            return
        original(self, bucket_name=bucket_name, key_name=key_name)

    return authorize


def _check_presigned(
    handler: Any, query: dict[str, list[str]], bucket_name: str | None, key_name: str | None
) -> None:
    """A pre-signed URL's credentials must hold the permission (see the module's docstring)."""
    from moto.iam.access_control import S3IAMRequest

    if "X-Amz-Credential" in query:  # SigV4
        credential = query["X-Amz-Credential"][0]
    else:  # SigV2, boto3's default for S3 pre-signed URLs
        credential = f"{query['AWSAccessKeyId'][0]}/-/{handler.region}/s3/aws4_request"
    headers = dict(handler.headers)
    headers["Authorization"] = f"AWS4-HMAC-SHA256 Credential={credential}, Signature=-,"
    token = query.get("X-Amz-Security-Token") or query.get("x-amz-security-token")
    if token:
        headers["X-Amz-Security-Token"] = token[0]
    request = S3IAMRequest(
        account_id=handler.current_account,
        method=handler.method,
        path=handler.raw_path,
        data=handler.data,
        body=handler.raw_body,
        headers=headers,
        action=handler._get_action(),
    )
    arn = f"{bucket_name or '*'}/{key_name}" if key_name else (bucket_name or "*")
    request.check_action_permitted(f"arn:aws:s3:::{arn}")


def _s3_encoded_path(original: Any) -> Any:
    def create_aws_request(self: Any) -> Any:
        from urllib.parse import quote

        decoded = self._path
        path, mark, query = decoded.partition("?")
        self._path = quote(path, safe="/~") + mark + query
        try:
            return original(self)
        finally:
            self._path = decoded  # encoded for this signature only, never twice

    return create_aws_request


def _policy_document(original: Any) -> Any:
    def init(self: Any, policy: Any) -> None:
        import ast
        import json

        if isinstance(policy, dict) and "Statement" in policy:  # the document itself
            policy = json.dumps(policy)
        elif isinstance(policy, str):
            try:
                json.loads(policy)
            except ValueError:
                policy = json.dumps(ast.literal_eval(policy))
        original(self, policy)

    return init


def _recorded(original: Any) -> Any:
    def check_action_permitted(self: Any, resource: str) -> None:
        principal = getattr(self._access_key, "arn", "?")
        self._action = IAM_ACTIONS.get(self._action, self._action)
        try:
            original(self, resource)
        except Exception:
            _record(principal, self._action, resource, False)
            raise
        _record(principal, self._action, resource, True)

    return check_action_permitted


def apply() -> None:
    """Install the resource checks and the decision record (the emulator server calls this)."""
    from moto.dynamodb.responses import DynamoHandler
    from moto.iam.access_control import IAMPolicy, IAMRequestBase, S3IAMRequest
    from moto.kinesis.responses import KinesisResponse
    from moto.s3.responses import S3Response
    from moto.sqs.responses import SQSResponse

    DynamoHandler._authenticate_and_authorize_normal_action = _per_resource(_dynamodb_resources)  # type: ignore[method-assign]
    KinesisResponse._authenticate_and_authorize_normal_action = _per_resource(_kinesis_resources)  # type: ignore[method-assign]
    S3Response._authenticate_and_authorize_s3_action = _s3_authorize(  # type: ignore[method-assign]
        S3Response._authenticate_and_authorize_s3_action
    )
    SQSResponse._determine_resource = _sqs_resource(SQSResponse._determine_resource)  # type: ignore[method-assign]
    SQSResponse._authenticate_and_authorize_normal_action = _sqs_json_errors(  # type: ignore[method-assign]
        SQSResponse._authenticate_and_authorize_normal_action
    )
    S3IAMRequest._create_aws_request = _s3_encoded_path(S3IAMRequest._create_aws_request)  # type: ignore[method-assign]
    IAMPolicy.__init__ = _policy_document(IAMPolicy.__init__)  # type: ignore[method-assign]
    IAMRequestBase.check_action_permitted = _recorded(IAMRequestBase.check_action_permitted)  # type: ignore[method-assign]
