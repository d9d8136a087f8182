"""Decodes OTLP/HTTP trace export requests with the OpenTelemetry project's
own protobuf definitions (PyPI opentelemetry-proto), independently of the
gateway's Rust encoder, and prints one JSON object per span (sorted keys),
in the order received.

Usage: python decode.py REQUEST.bin [...]          (trace export requests)
       python decode.py --logs REQUEST.bin [...]   (log export requests: one
                                                    JSON object per record)
"""

import json
import sys

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
)
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status


def value(v):
    kind = v.WhichOneof("value")
    if kind in ("string_value", "int_value", "bool_value", "double_value"):
        return getattr(v, kind)
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    raise SystemExit(f"unexpected attribute value kind {kind!r}")


def attributes(pairs):
    out = {}
    for kv in pairs:
        if kv.key in out:
            raise SystemExit(f"attribute {kv.key!r} appears twice")
        out[kv.key] = value(kv.value)
    return out


def logs(paths):
    for path in paths:
        request = ExportLogsServiceRequest()
        with open(path, "rb") as f:
            request.ParseFromString(f.read())
        for resource_logs in request.resource_logs:
            resource = attributes(resource_logs.resource.attributes)
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    print(
                        json.dumps(
                            {
                                "resource": resource,
                                "scope": scope_logs.scope.name,
                                "event_name": record.event_name,
                                "severity_number": SeverityNumber.Name(record.severity_number),
                                "severity_text": record.severity_text,
                                "body": value(record.body),
                                "trace_id": record.trace_id.hex(),
                                "span_id": record.span_id.hex(),
                                "attributes": attributes(record.attributes),
                            },
                            sort_keys=True,
                        )
                    )


if sys.argv[1:2] == ["--logs"]:
    logs(sys.argv[2:])
    sys.exit(0)

for path in sys.argv[1:]:
    request = ExportTraceServiceRequest()
    with open(path, "rb") as f:
        request.ParseFromString(f.read())
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                print(
                    json.dumps(
                        {
                            "resource": resource,
                            "scope": scope_spans.scope.name,
                            "name": span.name,
                            "kind": Span.SpanKind.Name(span.kind),
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "start_time_unix_nano": span.start_time_unix_nano,
                            "end_time_unix_nano": span.end_time_unix_nano,
                            "status": {
                                "code": Status.StatusCode.Name(span.status.code),
                                "message": span.status.message,
                            },
                            "attributes": attributes(span.attributes),
                        },
                        sort_keys=True,
                    )
                )
