"""Proves that the host's Python runs in the image: each line comes from one module
that needs files beyond the interpreter (the pure-Python standard library, an
extension module in lib-dynload, a shared library that module loads)."""

import bz2
import ctypes
import hashlib
import http.server
import json
import lzma
import sqlite3
import ssl
import sys
import threading
import urllib.request

print(f"python: {sys.version.split()[0]} from {sys.executable}")

document = {"answer": 42, "tools": ["gpubox", "python"]}
print("json:", json.dumps(json.loads(json.dumps(document)), sort_keys=True))


class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(document, sort_keys=True).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


# The loopback interface exists even with `--network none`.
server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
threading.Thread(target=server.serve_forever, daemon=True).start()
with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/") as reply:
    print(f"http.server: GET / -> {reply.status} {reply.read().decode()}")
server.shutdown()

print("ssl:", ssl.OPENSSL_VERSION)
context = ssl.create_default_context()
print("ssl: default context verifies certificates:", context.verify_mode == ssl.CERT_REQUIRED)
print("hashlib: sha256(b'gpubox') =", hashlib.sha256(b"gpubox").hexdigest()[:16])

with sqlite3.connect(":memory:") as db:
    db.execute("create table tools (name text, stars integer)")
    db.executemany("insert into tools values (?, ?)", [("gpubox", 40), ("python", 2)])
    (total,) = db.execute("select sum(stars) from tools").fetchone()
    print(f"sqlite3: {sqlite3.sqlite_version} sum(stars) = {total}")

libc = ctypes.CDLL("libc.so.6")
print("ctypes: libc abs(-42) =", libc.abs(-42))

data = b"gpubox " * 1000
packed = lzma.compress(data)
print(f"lzma: {len(data)} -> {len(packed)} bytes, round trip {lzma.decompress(packed) == data}")
packed = bz2.compress(data)
print(f"bz2: {len(data)} -> {len(packed)} bytes, round trip {bz2.decompress(packed) == data}")

print("all modules work")
