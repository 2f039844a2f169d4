"""mta_sts_server - a loopback HTTPS server that serves MTA-STS policies,
for the tests of ringmail's MTA-STS fetch (tests/unit/test_mta_sts_fetch.c)
and enforcement (tests/integration/test_mta_sts.py).

    /usr/bin/python3 mta_sts_server.py CERT KEY IP POLICY_DIR [PORT]

POLICY_DIR/<host> is the body served for Host: <host> (the file's first
line may be "#status 404" or "#type text/html" or "#location URL" to
answer otherwise). The port (chosen when PORT is absent or 0) is printed on stdout, then the server
runs until killed. Every request's host is appended to POLICY_DIR/.log.
"""
import http.server
import os
import ssl
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        host = (self.headers.get("Host") or "").split(":")[0].lower()
        with open(os.path.join(self.server.policy_dir, ".log"), "a") as f:
            f.write(host + " " + self.path + "\n")
        path = os.path.join(self.server.policy_dir, os.path.basename(host))
        if self.path != "/.well-known/mta-sts.txt" or not host or not os.path.isfile(path):
            self.send_error(404)
            return
        with open(path, "rb") as f:
            body = f.read()
        status, ctype, location = 200, "text/plain; charset=utf-8", None
        while body.startswith(b"#"):
            line, _, body = body.partition(b"\n")
            word, _, value = line.decode().partition(" ")
            if word == "#status":
                status = int(value)
            elif word == "#type":
                ctype = value
            elif word == "#location":
                location = value
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    cert, key, ip, policy_dir = sys.argv[1:5]
    port = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    server = http.server.ThreadingHTTPServer((ip, port), Handler)
    server.policy_dir = policy_dir
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
