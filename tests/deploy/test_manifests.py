#!/usr/bin/python3
"""test_manifests.py - deploy/: the Kubernetes YAML parses and agrees with the binary (flags, ports, probe paths),
the seccomp profile lets ringd run, the systemd units name real variables, the HAProxy config has what a restart
needs. Usage: test_manifests.py RINGD_BIN SOURCE_DIR (run by ctest: deploy_manifests)."""
import ctypes
import glob
import json
import os
import platform
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

RINGD, SRC = sys.argv[1], sys.argv[2]
DEPLOY = os.path.join(SRC, "deploy")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def help_of(cmd):
    out = subprocess.run([RINGD, cmd, "--help"], capture_output=True, text=True, timeout=10)
    return out.stdout + out.stderr


SERVE_HELP, DEMO_HELP = help_of("serve"), help_of("demo")


def flags_known(args, help_text, where):
    for a in args:
        if a.startswith("--"):
            check(re.search(r"(^|\s)" + re.escape(a.split("=")[0]) + r"(\s|$|=)", help_text) is not None,
                  f"{where}: flag {a} is not in the binary's --help")


def flag_value(args, flag):
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


# ---------- Kubernetes ----------
docs = {}
for path in sorted(glob.glob(os.path.join(DEPLOY, "kubernetes", "*.yaml"))):
    with open(path) as f:
        for d in yaml.safe_load_all(f):
            if d is not None:
                check("kind" in d and "apiVersion" in d, f"{path}: a document without kind/apiVersion")
                docs[(d["kind"], d["metadata"]["name"])] = d

dep = docs.get(("Deployment", "ringd"))
check(dep is not None, "deployment.yaml: no Deployment ringd")
spec = dep["spec"]
pod = spec["template"]["spec"]
labels = spec["template"]["metadata"]["labels"]
check(spec["selector"]["matchLabels"].items() <= labels.items(), "Deployment selector does not match its pods")
ru = spec["strategy"]["rollingUpdate"]
check(spec["strategy"]["type"] == "RollingUpdate" and ru["maxUnavailable"] == 0, "rolling update needs maxUnavailable: 0")
check(ru.get("maxSurge", 0) not in (0, "0", "0%"), "maxUnavailable 0 needs a surge")

ctr = next(c for c in pod["containers"] if c["name"] == "ringd")
args = [str(a) for a in ctr["args"]]
check(args[0] == "serve", "the container runs `ringd serve`")
flags_known(args[1:], SERVE_HELP, "Deployment container args")
ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
check(port_of(flag_value(args, "--listen")) == ports["http"], "--listen port != containerPort http")
check(port_of(flag_value(args, "--admin-listen")) == ports["admin"], "--admin-listen port != containerPort admin")

probe_paths = {}
for name in ("startupProbe", "readinessProbe", "livenessProbe"):
    p = ctr.get(name)
    check(p is not None, f"no {name}")
    hg = p["httpGet"]
    port = hg["port"]
    check(port == "admin" or port == ports["admin"], f"{name} is not on the admin port")
    probe_paths[name] = hg["path"]
check(probe_paths["readinessProbe"] == "/readyz", "readiness probes /readyz")
check(probe_paths["livenessProbe"] == "/livez", "liveness probes /livez")

sleep_cmd = ctr["lifecycle"]["preStop"]["exec"]["command"]
check(os.path.basename(sleep_cmd[0]) == "sleep", "preStop pauses")
pause_s = float(sleep_cmd[1])
grace_ms = int(flag_value(args, "--drain-grace-ms") or 0)
drain_ms = int(flag_value(args, "--drain-timeout-ms") or 5000)
check(pod["terminationGracePeriodSeconds"] > pause_s + (grace_ms + drain_ms) / 1000.0,
      "terminationGracePeriodSeconds must exceed preStop + drain grace + drain timeout")
check(pause_s >= ctr["readinessProbe"]["periodSeconds"] * ctr["readinessProbe"]["failureThreshold"],
      "the preStop pause covers the readiness probe's period (the endpoint is gone before SIGTERM)")

for c in pod.get("initContainers", []) + pod["containers"]:
    r = c["resources"]
    check(r["requests"] == r["limits"] and {"cpu", "memory"} <= r["limits"].keys(),
          f"container {c['name']}: requests == limits (cpu, memory) for Guaranteed QoS")
for c in pod.get("initContainers", []):
    if c["args"][0] == "demo":
        flags_known(c["args"][1:], DEMO_HELP, "initContainer seed")

tsc = pod.get("topologySpreadConstraints", [])
check(len(tsc) > 0, "topology spread constraints")
for t in tsc:
    check(t["labelSelector"]["matchLabels"].items() <= labels.items(), "a spread constraint selects other pods")
sp = pod["securityContext"]["seccompProfile"]
check(sp["type"] == "Localhost", "the pod runs the shipped seccomp profile")
prof_path = os.path.join(DEPLOY, "kubernetes", "seccomp", os.path.basename(sp["localhostProfile"]))
check(os.path.exists(prof_path), f"{prof_path} (localhostProfile) exists")
with open(prof_path) as f:
    profile = json.load(f)
allowed = set()
for s in profile["syscalls"]:
    if s["action"] == "SCMP_ACT_ALLOW":
        allowed.update(s["names"])
check({"io_uring_setup", "io_uring_enter", "io_uring_register"} <= allowed, "the profile allows io_uring_*")
check(profile["defaultAction"] in ("SCMP_ACT_ERRNO", "SCMP_ACT_KILL_PROCESS"), "the profile is an allow list")

svc = docs.get(("Service", "ringd"))
check(svc is not None and svc["spec"]["selector"].items() <= labels.items(), "the Service selects the pods")
for p in svc["spec"]["ports"]:
    check(p["targetPort"] in ports or p["targetPort"] in ports.values(), f"Service targetPort {p['targetPort']}")
pdb = docs.get(("PodDisruptionBudget", "ringd"))
check(pdb is not None and pdb["spec"]["selector"]["matchLabels"].items() <= labels.items(), "the PDB selects the pods")
hpa = docs.get(("HorizontalPodAutoscaler", "ringd"))
check(hpa is not None and hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
      and hpa["spec"]["scaleTargetRef"]["name"] == "ringd", "the HPA scales the Deployment")
check(hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "ringd_requests_per_second", "the HPA scales on rps")
adapter = docs.get(("ConfigMap", "prometheus-adapter-ringd"))
rules = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
check(any(r["name"]["as"] == "ringd_requests_per_second" for r in rules), "an adapter rule makes the HPA's metric")

# ---------- the binary with the Deployment's flags: ports, probe paths, the drain ----------
tmp = tempfile.mkdtemp(prefix="ringd-manifests-")


def run_serve(extra_env=None, preexec=None, tag="serve"):
    db = os.path.join(tmp, "db-" + tag)
    subprocess.run([RINGD, "demo", "--db", db, "--users", "100"], check=True, capture_output=True, timeout=60)
    a = list(args)
    for i, x in enumerate(a):
        if x in ("--listen", "--admin-listen"):
            a[i + 1] = "127.0.0.1:0"
        if x == "--db":
            a[i + 1] = db
    log = open(os.path.join(tmp, tag + ".log"), "w+")
    env = dict(os.environ, **(extra_env or {}))
    p = subprocess.Popen([RINGD] + a, stdout=log, stderr=log, env=env, preexec_fn=preexec)
    main = admin = None
    for _ in range(2000):
        log.seek(0)
        m = re.search(r"msg=listening addr=\S+:(\d+) .*admin=\S+:(\d+)", log.read())
        if m:
            main, admin = int(m.group(1)), int(m.group(2))
            break
        if p.poll() is not None:
            break
        time.sleep(0.01)
    log.seek(0)
    return p, main, admin, log


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


p, main, admin, log = run_serve()
check(main is not None, "ringd serve with the Deployment's flags started: " + log.read())
if main is not None:
    for name, path in probe_paths.items():
        check(get(admin, path) == 200, f"{name} {path} answers 200 on the admin port")
    check(get(main, "/users/7") == 200, "the http port serves users")
    t0 = time.time()
    p.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    check(get(admin, "/readyz") == 503, "readiness is off during the drain grace")
    rc = p.wait(timeout=60)
    check(rc == 0, f"drained and exited 0 (rc {rc})")
    check(time.time() - t0 < pod["terminationGracePeriodSeconds"] - pause_s, "the drain fits the termination grace")
else:
    p.kill()

# ---------- the seccomp profile, installed as a runtime would (x86_64: numbers from the kernel headers) ----------
unistd = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"
if platform.machine() == "x86_64" and os.path.exists(unistd):
    nrs = {}
    with open(unistd) as f:
        for line in f:
            m = re.match(r"#define __NR_(\w+)\s+(\d+)", line)
            if m:
                nrs[m.group(1)] = int(m.group(2))
    numbers = sorted(nrs[n] for n in allowed if n in nrs)

    def bpf(code, jt, jf, k):
        return struct.pack("HBBI", code, jt, jf, k)

    LD_W_ABS, JEQ_K, JGE_K, RET_K = 0x20, 0x15, 0x35, 0x06
    ALLOW, ERRNO_EPERM, KILL = 0x7FFF0000, 0x00050000 | 1, 0x80000000
    prog = [bpf(LD_W_ABS, 0, 0, 4), bpf(JEQ_K, 1, 0, 0xC000003E), bpf(RET_K, 0, 0, KILL),
            bpf(LD_W_ABS, 0, 0, 0), bpf(JGE_K, 0, 1, 0x40000000), bpf(RET_K, 0, 0, ERRNO_EPERM)]
    for n in numbers:
        prog += [bpf(JEQ_K, 0, 1, n), bpf(RET_K, 0, 0, ALLOW)]
    prog.append(bpf(RET_K, 0, 0, ERRNO_EPERM))
    code = b"".join(prog)
    buf = ctypes.create_string_buffer(code)

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(prog), ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)

    def install():
        # PR_SET_NO_NEW_PRIVS, then PR_SET_SECCOMP/SECCOMP_MODE_FILTER: what runc does for the container.
        if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:
            os._exit(99)

    # Sanitizer runtimes make calls of their own (their reports, /proc reads); the release binary is what ships.
    env = {"ASAN_OPTIONS": "detect_leaks=0:log_path=/dev/stderr"}
    p, main, admin, log = run_serve(env, install, "seccomp")
    text = log.read()
    check(main is not None, "ringd serve runs under deploy/kubernetes/seccomp/ringd.json: " + text)
    if main is not None:
        check(get(main, "/users/7") == 200 and get(admin, "/metrics") == 200, "and serves under it")
        p.send_signal(signal.SIGTERM)
        check(p.wait(timeout=60) == 0, "and drains under it")
    else:
        p.kill()
    # The same filter without the io_uring calls: the message a blocked container gets.
    blocked = [nrs[n] for n in ("io_uring_setup", "io_uring_enter", "io_uring_register")]
    prog2 = prog[:6]
    for n in numbers:
        if n not in blocked:
            prog2 += [bpf(JEQ_K, 0, 1, n), bpf(RET_K, 0, 0, ALLOW)]
    prog2.append(bpf(RET_K, 0, 0, ERRNO_EPERM))
    buf = ctypes.create_string_buffer(b"".join(prog2))
    fprog = SockFprog(len(prog2), ctypes.cast(buf, ctypes.c_void_p))
    p, main, admin, log = run_serve(env, install, "blocked")
    rc = p.wait(timeout=30)
    text = log.read()
    check(rc == 1 and "io_uring_unavailable" in text and "seccomp" in text,
          f"without io_uring_* in the profile ringd exits 1 naming seccomp (rc {rc}): {text}")
else:
    print("skip: seccomp run (not x86_64 or no kernel headers)", file=sys.stderr)

# ---------- systemd units: the variables they set are the binary's ----------
for unit in ("ringd.service", "ringd-follow.service"):
    with open(os.path.join(DEPLOY, "systemd", unit)) as f:
        text = f.read()
    helptext = SERVE_HELP if unit == "ringd.service" else help_of("follow")
    for var in re.findall(r"^Environment=(RINGD_\w+)=", text, re.M):
        check(var in helptext, f"{unit}: {var} is not in the binary's --help")
    for m in re.findall(r"^ExecStart=(\S+) (\w+)", text, re.M):
        check(m[0] == "/usr/local/bin/ringd" and m[1] in ("serve", "follow"), f"{unit}: ExecStart {m}")
with open(os.path.join(DEPLOY, "systemd", "ringd.service")) as f:
    svc_text = f.read()
for sc in ("io_uring_setup", "io_uring_enter", "io_uring_register"):
    check(sc in svc_text, f"ringd.service's SystemCallFilter allows {sc}")
m = re.search(r"^TimeoutStopSec=(\d+)s", svc_text, re.M)
g = re.search(r"RINGD_DRAIN_GRACE_MS=(\d+)", svc_text)
d = re.search(r"RINGD_DRAIN_TIMEOUT_MS=(\d+)", svc_text)
check(m and g and d and int(m.group(1)) * 1000 > int(g.group(1)) + int(d.group(1)),
      "TimeoutStopSec covers the drain grace and timeout")

# ---------- HAProxy ----------
with open(os.path.join(DEPLOY, "haproxy", "haproxy.cfg")) as f:
    hap = f.read()
check(re.search(r"^\s*retry-on .*conn-failure.*empty-response", hap, re.M), "haproxy: retry-on conn-failure empty-response")
check(re.search(r"^\s*option redispatch", hap, re.M), "haproxy: option redispatch")
check("uri /readyz" in hap, "haproxy: health checks on /readyz")
check(re.search(r"proto h2", hap), "haproxy: h2c to the backends")
for port in re.findall(r"^\s*server \S+ \S+:(\d+) port (\d+)", hap, re.M):
    check(int(port[0]) == ports["http"] and int(port[1]) == ports["admin"], f"haproxy server ports {port}")
if shutil.which("haproxy"):
    r = subprocess.run(["haproxy", "-c", "-f", os.path.join(DEPLOY, "haproxy", "haproxy.cfg")], capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 0, "haproxy -c accepts deploy/haproxy/haproxy.cfg: " + r.stdout + r.stderr)

shutil.rmtree(tmp, ignore_errors=True)
if failures:
    print(f"{len(failures)} check(s) failed", file=sys.stderr)
    sys.exit(1)
print("deploy manifests: all checks passed")
