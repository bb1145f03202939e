"""Real servers on loopback for the fetch tests and bench/season_fetch.py: nginx (Debian's, static files
with Range and ETag) for the COGs, `rustac serve` (PyPI, in-memory backend) as the STAC API, and a
fault-injecting HTTP proxy between the client and nginx.

FaultProxy faults (each armed for the next N requests whose path contains `match`):
  503 / 429 (with Retry-After) answers, `reset` (headers and half the body, then a TCP RST),
  `truncate` (half the body, then a clean close: shorter than Content-Length), `stall` (half the body,
  then silence for `stall_s`), `length` (a Content-Length of 10^15). Paths ending in `?redirect` get a
  302 to `redirect_to`. With `tls=(cert, key)` it serves HTTPS. `latency_s` delays every answer (the bench's emulated RTT: this kernel
  has no netem) and `loss` drops that share of answers into a `stall` of `loss_stall_s` (what a lost
  segment costs a TCP stream: a retransmission timeout).
"""

import http.client
import os
import random
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 20.0, proc=None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout} s")


class Nginx:
    """nginx serving `root` on host:port (static files: Range, ETag, Last-Modified)."""

    def __init__(self, root, work, host="127.0.0.1", port=None, netns=None):
        self.root, self.work = Path(root), Path(work)
        self.host, self.port = host, port or free_port()
        self.netns = netns
        self.proc = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "Nginx":
        self.work.mkdir(parents=True, exist_ok=True)
        conf = self.work / "nginx.conf"
        w = self.work
        conf.write_text(f"""
user root;
daemon off;
worker_processes 1;
pid {w}/nginx.pid;
error_log {w}/error.log;
events {{ worker_connections 512; }}
http {{
  access_log off;
  client_body_temp_path {w}/body; proxy_temp_path {w}/proxy; fastcgi_temp_path {w}/fastcgi;
  uwsgi_temp_path {w}/uwsgi; scgi_temp_path {w}/scgi;
  keepalive_requests 100000;
  sendfile on;
  server {{
    listen {self.host}:{self.port};
    root {self.root};
    location / {{ }}
  }}
}}
""")
        cmd = [NGINX, "-c", str(conf), "-e", str(w / "error.log")]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not self.netns:
            try:
                wait_port(self.port, self.host, proc=self.proc)
            except RuntimeError:
                self.stop()
                raise
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Rustac:
    """`rustac serve` (in-memory backend) loaded with item collection files."""

    def __init__(self, files, host="127.0.0.1", port=None):
        self.files = [str(f) for f in files]
        self.host, self.port = host, port or free_port()
        self.proc = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "Rustac":
        exe = shutil.which("rustac") or str(Path(os.sys.executable).with_name("rustac"))
        self.proc = subprocess.Popen([exe, "serve", "--addr", f"{self.host}:{self.port}", "--create-collections",
                                      *self.files], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_port(self.port, self.host, proc=self.proc)
            end = time.monotonic() + 20
            while time.monotonic() < end:  # the port opens before the items are loaded
                try:
                    with urllib.request.urlopen(self.url + "/collections", timeout=2) as r:
                        if b'"id"' in r.read():
                            return self
                except OSError:
                    pass
                time.sleep(0.1)
            raise RuntimeError("rustac serve did not load its items")
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class FaultProxy:
    """A threaded HTTP/1.1 proxy to one upstream (host, port) that injects faults on demand."""

    def __init__(self, upstream_host, upstream_port, host="127.0.0.1", port=None, stall_s=3.0,
                 latency_s=0.0, loss=0.0, loss_stall_s=0.2, seed=0, tls=None):
        self.upstream = (upstream_host, upstream_port)
        self.host, self.port = host, port or free_port()
        self.stall_s, self.latency_s, self.loss, self.loss_stall_s = stall_s, latency_s, loss, loss_stall_s
        self.armed = []  # [kind, remaining, match, arg]
        self.redirect_to = None  # requests whose query is "redirect" get a 302 to this origin
        self.injected = {}
        self.requests = 0
        self.paths = []  # the paths asked for, in order
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.sock = None
        self.tls = None
        if tls is not None:  # (certificate file, key file): serve HTTPS
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(*map(str, tls))

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def arm(self, kind: str, n: int, match: str = "", arg=None) -> None:
        with self.lock:
            self.armed.append([kind, n, match, arg])

    def start(self) -> "FaultProxy":
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.host, self.port))
        self.sock.listen(128)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.sock is not None:
            self.sock.close()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _fault_for(self, path: str):
        with self.lock:
            self.requests += 1
            self.paths.append(path)
            for entry in self.armed:
                kind, left, match, arg = entry
                if left > 0 and match in path:
                    entry[1] -= 1
                    self.injected[kind] = self.injected.get(kind, 0) + 1
                    return kind, arg
            if self.loss and self.rng.random() < self.loss:
                self.injected["loss"] = self.injected.get("loss", 0) + 1
                return "loss", None
        return None, None

    def _serve(self, conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except OSError:  # the client refused our certificate
                conn.close()
                return
        reader = conn.makefile("rb")
        upstream = None
        try:
            while True:
                line = reader.readline(65536)
                if not line:
                    return
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers = {}
                while True:
                    h = reader.readline(65536)
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, v = h.decode("latin-1").split(":", 1)
                    headers[k.strip()] = v.strip()
                body = reader.read(int(headers.get("Content-Length", 0) or 0)) if method == "POST" else None
                if self.redirect_to and path.endswith("?redirect"):
                    conn.sendall(f"HTTP/1.1 302 Found\r\nLocation: {self.redirect_to}{path[:-9]}\r\n"
                                 "Content-Length: 0\r\n\r\n".encode())
                    continue
                kind, arg = self._fault_for(path)
                if self.latency_s:
                    time.sleep(self.latency_s)
                if kind in ("503", "429"):
                    extra = f"Retry-After: {arg}\r\n" if kind == "429" and arg is not None else ""
                    conn.sendall(f"HTTP/1.1 {kind} Fault\r\nContent-Length: 5\r\n{extra}Connection: close\r\n\r\n"
                                 "fault".encode())
                    return
                if upstream is None:
                    upstream = http.client.HTTPConnection(*self.upstream, timeout=60)
                fwd = {k: v for k, v in headers.items() if k.lower() not in ("connection", "host")}
                fwd["Host"] = f"{self.upstream[0]}:{self.upstream[1]}"
                upstream.request(method, path, body=body, headers=fwd)
                resp = upstream.getresponse()
                data = resp.read()
                head = f"HTTP/1.1 {resp.status} {resp.reason}\r\n"
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                        head += f"{k}: {v}\r\n"
                length = resp.getheader("Content-Length", "0") if method == "HEAD" else len(data)
                head += f"Content-Length: {length}\r\n\r\n"
                if kind == "length":
                    head = head.replace(f"Content-Length: {len(data)}", "Content-Length: 1000000000000000")
                if kind in ("reset", "truncate", "stall", "loss", "length"):
                    half = len(data) // 2
                    conn.sendall(head.encode() + data[:half])
                    if kind == "reset":
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        return
                    if kind in ("truncate", "length"):
                        return
                    time.sleep(self.stall_s if kind == "stall" else self.loss_stall_s)
                    if kind == "stall":
                        return
                    conn.sendall(data[half:])  # a lost segment: late, but the stream goes on
                    continue
                conn.sendall(head.encode() + data)
        except (OSError, ValueError):
            return
        finally:
            if upstream is not None:
                upstream.close()
            try:
                conn.close()
            except OSError:
                pass


if __name__ == "__main__":  # the bench runs a proxy inside a network namespace
    import argparse

    p = argparse.ArgumentParser(description="run a FaultProxy until killed")
    p.add_argument("--upstream", required=True, help="HOST:PORT")
    p.add_argument("--listen", required=True, help="HOST:PORT")
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--loss", type=float, default=0.0)
    p.add_argument("--loss-stall", type=float, default=0.2)
    a = p.parse_args()
    uh, up = a.upstream.rsplit(":", 1)
    lh, lp = a.listen.rsplit(":", 1)
    proxy = FaultProxy(uh, int(up), lh, int(lp), latency_s=a.latency, loss=a.loss, loss_stall_s=a.loss_stall).start()
    print("proxy ready", flush=True)
    while True:
        time.sleep(3600)
