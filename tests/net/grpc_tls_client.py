"""grpc_tls_client.py - ringd's gRPC over TLS (ALPN h2) through Python grpcio, run by tests/net/test_grpc_python.c.

usage: /usr/bin/python3 grpc_tls_client.py STUB_DIR TLS_PORT CA_FILE
Exit status: the number of failed checks.
"""
import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402

from ringd.v1 import users_pb2, users_pb2_grpc  # noqa: E402
from health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

failures = 0


def check(name, cond, detail=""):
    global failures
    print(("ok   " if cond else "FAIL ") + name + ("" if cond else ": " + str(detail)), flush=True)
    if not cond:
        failures += 1


with open(sys.argv[3], "rb") as f:
    creds = grpc.ssl_channel_credentials(root_certificates=f.read())
channel = grpc.secure_channel("localhost:%s" % sys.argv[2], creds)
users = users_pb2_grpc.UsersStub(channel)
u = users.GetUser(users_pb2.GetUserRequest(id=7), timeout=10)
check("GetUser over TLS", u.id == 7 and u.record.fields["id"].number_value == 7.0, u)
try:
    users.GetUser(users_pb2.GetUserRequest(id=10**12), timeout=10)
    check("NOT_FOUND over TLS", False, "no error")
except grpc.RpcError as e:
    check("NOT_FOUND over TLS", e.code() == grpc.StatusCode.NOT_FOUND, e.code())
b = users.BatchGetUsers(users_pb2.BatchGetUsersRequest(ids=list(range(1, 1001))), timeout=30)
check("batch of 1000 over TLS", [x.id for x in b.users] == list(range(1, 1001)), len(b.users))
h = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
check("health over TLS: SERVING", h.status == health_pb2.HealthCheckResponse.SERVING, h.status)
channel.close()
sys.exit(failures)
