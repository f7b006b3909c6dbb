"""grpc_client.py - ringd's gRPC service through a real client (grpcio), run by tests/net/test_grpc_python.c.

usage: /usr/bin/python3 grpc_client.py STUB_DIR PORT SERVER_PID SPECIAL_IDS

STUB_DIR holds the modules protoc generated at test time from proto/ringd/v1/users.proto
and grpc-proto's health.proto; SPECIAL_IDS are comma-separated ids of records with nested
objects, arrays and non-ASCII text. Each check prints one line; the exit status is the
number of failed checks (0: all passed). The last check drains the server (SIGTERM).
"""
import concurrent.futures
import http.client
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402

from ringd.v1 import users_pb2, users_pb2_grpc  # noqa: E402
from health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

PORT = int(sys.argv[2])
PID = int(sys.argv[3])
SPECIAL = [int(x) for x in sys.argv[4].split(",") if x]
TARGET = "127.0.0.1:%d" % PORT
failures = 0


def check(name, cond, detail=""):
    global failures
    print(("ok   " if cond else "FAIL ") + name + ("" if cond else ": " + str(detail)), flush=True)
    if not cond:
        failures += 1


def http_record(uid):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    c.request("GET", "/users/%d" % uid)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def same_value(path, v, j, problems):
    """Compares one google.protobuf.Value with the JSON value it should hold: kind and content."""
    kind = v.WhichOneof("kind")
    if j is None:
        ok = kind == "null_value"
    elif isinstance(j, bool):
        ok = kind == "bool_value" and v.bool_value == j
    elif isinstance(j, (int, float)):
        ok = kind == "number_value" and v.number_value == float(j)  # Struct numbers are doubles
    elif isinstance(j, str):
        ok = kind == "string_value" and v.string_value == j
    elif isinstance(j, list):
        ok = kind == "list_value" and len(v.list_value.values) == len(j)
        if ok:
            for i, (g, x) in enumerate(zip(v.list_value.values, j)):
                same_value("%s[%d]" % (path, i), g, x, problems)
    elif isinstance(j, dict):
        ok = kind == "struct_value"
        if ok:
            same_struct(path, v.struct_value, j, problems)
    else:
        ok = False
    if not ok:
        problems.append("%s: %s %r, JSON %r" % (path, kind, json_format.MessageToDict(v), j))


def same_struct(path, st, j, problems):
    """A Struct against a JSON object, field by field (a map: the keys' order is not kept)."""
    if set(st.fields.keys()) != set(j.keys()):
        problems.append("%s: keys %r != %r" % (path, sorted(st.fields.keys()), sorted(j.keys())))
        return
    for k in j:
        same_value("%s.%s" % (path, k), st.fields[k], j[k], problems)


def code_of(fn):
    try:
        fn()
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


channel = grpc.insecure_channel(TARGET)
users = users_pb2_grpc.UsersStub(channel)
health = health_pb2_grpc.HealthStub(channel)
raw_get = channel.unary_unary("/ringd.v1.Users/GetUser", request_serializer=None, response_deserializer=None)

# --- GetUser, and the record against the HTTP answer, field by field ---
for uid in [1, 2] + SPECIAL:
    u = users.GetUser(users_pb2.GetUserRequest(id=uid), timeout=10)
    status, body = http_record(uid)
    check("GetUser(%d) id" % uid, u.id == uid and status == 200, (u.id, status))
    problems = []
    same_struct("record", u.record, json.loads(body), problems)
    check("GetUser(%d) record == HTTP record" % uid, not problems, problems)

# --- every status ---
check("NOT_FOUND for a missing user",
      code_of(lambda: users.GetUser(users_pb2.GetUserRequest(id=10**12), timeout=10)) == grpc.StatusCode.NOT_FOUND)
check("INVALID_ARGUMENT for id 0",
      code_of(lambda: users.GetUser(users_pb2.GetUserRequest(id=0), timeout=10)) == grpc.StatusCode.INVALID_ARGUMENT)
check("INVALID_ARGUMENT for a malformed message",
      code_of(lambda: raw_get(b"\x08\xff\xff", timeout=10)) == grpc.StatusCode.INVALID_ARGUMENT)
check("INVALID_ARGUMENT for 1001 ids",
      code_of(lambda: users.BatchGetUsers(users_pb2.BatchGetUsersRequest(ids=list(range(1, 1002))), timeout=10))
      == grpc.StatusCode.INVALID_ARGUMENT)
unknown = channel.unary_unary("/ringd.v1.Users/DeleteUser", request_serializer=None, response_deserializer=None)
check("UNIMPLEMENTED for an unknown method", code_of(lambda: unknown(b"", timeout=10)) == grpc.StatusCode.UNIMPLEMENTED)
# 5 MiB: an unknown field (7) of that size; the client's own send limit is unlimited by default.
big = b"\x3a" + bytes([0x80, 0x80, 0xc0, 0x02]) + b"x" * (5 << 20)
check("RESOURCE_EXHAUSTED for a message over 4 MiB",
      code_of(lambda: raw_get(big, timeout=30)) == grpc.StatusCode.RESOURCE_EXHAUSTED)
# Compressible (gzip of a two-octet message would be larger, and is then sent uncompressed).
compressible = b"\x08\x01" + b"\x3a\xe8\x07" + b"x" * 1000
check("UNIMPLEMENTED for a compressed message",
      code_of(lambda: raw_get(compressible, timeout=10, compression=grpc.Compression.Gzip)) == grpc.StatusCode.UNIMPLEMENTED)
check("a deadline (grpc-timeout) is honoured, not refused",
      code_of(lambda: users.GetUser(users_pb2.GetUserRequest(id=3), timeout=30)) == grpc.StatusCode.OK)

# --- BatchGetUsers: found, missing and duplicate ids, in request order ---
ids = [3, 999999, 3, 1, 888888, 999999]
b = users.BatchGetUsers(users_pb2.BatchGetUsersRequest(ids=ids), timeout=10)
check("batch: found users in request order, duplicates twice", [u.id for u in b.users] == [3, 3, 1], [u.id for u in b.users])
check("batch: missing ids in request order", list(b.missing_ids) == [999999, 888888, 999999], list(b.missing_ids))
status, body = http_record(3)
problems = []
same_struct("record", b.users[0].record, json.loads(body), problems)
check("batch: records as GetUser gives them", not problems and b.users[0] == b.users[1], problems)
b = users.BatchGetUsers(users_pb2.BatchGetUsersRequest(ids=list(range(1, 1001))), timeout=30)
check("batch of 1000 (an answer larger than the flow-control windows)",
      [u.id for u in b.users] == list(range(1, 1001)) and not b.missing_ids, len(b.users))
b = users.BatchGetUsers(users_pb2.BatchGetUsersRequest(ids=[]), timeout=10)
check("empty batch", not b.users and not b.missing_ids)

# --- concurrent calls on one channel ---
futures = [users.GetUser.future(users_pb2.GetUserRequest(id=(i % 500) + 1), timeout=30) for i in range(300)]
got = [f.result().id for f in futures]
check("300 concurrent GetUser futures on one channel", got == [(i % 500) + 1 for i in range(300)])
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    res = list(pool.map(lambda i: users.BatchGetUsers(users_pb2.BatchGetUsersRequest(ids=[i, i + 1, 10**12]),
                                                          timeout=30), range(1, 101)))
check("100 batches from 8 threads on one channel",
      all([u.id for u in r.users] == [i, i + 1] and list(r.missing_ids) == [10**12] for i, r in zip(range(1, 101), res)))

# --- health ---
h = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
check("health: SERVING", h.status == health_pb2.HealthCheckResponse.SERVING, h.status)
h = health.Check(health_pb2.HealthCheckRequest(service="ringd.v1.Users"), timeout=10)
check("health of ringd.v1.Users: SERVING", h.status == health_pb2.HealthCheckResponse.SERVING, h.status)
check("health: NOT_FOUND for an unknown service",
      code_of(lambda: health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)) == grpc.StatusCode.NOT_FOUND)

# --- a drain: calls already open are answered (health NOT_SERVING, lookups UNAVAILABLE) ---
# A client-streaming call on a unary method sends its HEADERS now and its one
# message when the iterator yields it, after the drain has begun.
go = threading.Event()


def one_message(msg):
    go.wait(30)
    yield msg


health_call = channel.stream_unary("/grpc.health.v1.Health/Check",
                                   request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                                   response_deserializer=health_pb2.HealthCheckResponse.FromString)
get_call = channel.stream_unary("/ringd.v1.Users/GetUser", request_serializer=users_pb2.GetUserRequest.SerializeToString,
                                response_deserializer=users_pb2.User.FromString)
keep = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)


def streams_opened():
    keep.request("GET", "/metrics")
    text = keep.getresponse().read().decode()
    for line in text.splitlines():
        if line.startswith("ringd_http2_streams_opened_total "):
            return float(line.split()[1])
    return -1


before = streams_opened()
hf = health_call.future(one_message(health_pb2.HealthCheckRequest()), timeout=30)
gf = get_call.future(one_message(users_pb2.GetUserRequest(id=1)), timeout=30)
deadline = time.time() + 20
while streams_opened() < before + 2 and time.time() < deadline:  # both calls' streams are open at the server
    time.sleep(0.02)
check("both calls are open before the drain", streams_opened() >= before + 2)
os.kill(PID, signal.SIGTERM)
# The (single) shard is draining once /readyz says so on a connection opened before the
# signal, or once that idle connection is closed by the drain.
deadline = time.time() + 20
while time.time() < deadline:
    try:
        keep.request("GET", "/readyz")
        r = keep.getresponse()
        r.read()
        if r.status == 503:
            break
    except (OSError, http.client.HTTPException):
        break
    time.sleep(0.05)
go.set()
try:
    hr = hf.result()
    check("health during a drain: NOT_SERVING", hr.status == health_pb2.HealthCheckResponse.NOT_SERVING, hr.status)
except grpc.RpcError as e:
    check("health during a drain: NOT_SERVING", False, e)
check("GetUser during a drain: UNAVAILABLE", code_of(gf.result) == grpc.StatusCode.UNAVAILABLE, code_of(gf.result))
channel.close()
sys.exit(failures)
