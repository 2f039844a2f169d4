"""tlsrpt_https_sink - a loopback HTTPS server that takes TLS-RPT reports
(RFC 8460 5.4: POST, application/tlsrpt+gzip), for
tests/integration/test_tlsrpt.py.

    /usr/bin/python3 tlsrpt_https_sink.py CERT KEY IP OUT_DIR [PORT]

Each POST is saved as OUT_DIR/N.body with OUT_DIR/N.meta (path, then
Content-Type) and answered 200; the port (chosen when PORT is absent or
0) is printed on stdout, then the server runs until killed. A file
OUT_DIR/fail holding a number answers that many POSTs with 503 first.
"""
import http.server
import os
import ssl
import sys
import threading

LOCK = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        out = self.server.out_dir
        with LOCK:
            fail = os.path.join(out, "fail")
            if os.path.exists(fail):
                with open(fail) as f:
                    left = int(f.read().strip() or 0)
                if left > 0:
                    with open(fail, "w") as f:
                        f.write(str(left - 1))
                    self.send_error(503)
                    return
            n = len([x for x in os.listdir(out) if x.endswith(".body")])
            with open(os.path.join(out, "%d.meta" % n), "w") as f:
                f.write("%s\n%s\n" % (self.path, self.headers.get("Content-Type")))
            with open(os.path.join(out, "%d.body" % n), "wb") as f:
                f.write(body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    cert, key, ip, out_dir = sys.argv[1:5]
    port = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    server = http.server.ThreadingHTTPServer((ip, port), Handler)
    server.out_dir = out_dir
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
