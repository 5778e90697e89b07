#!/usr/bin/env python3
"""A lying node for the wallet's and the explorer's tests: forwards JSON-RPC (POST) and the
explorer (GET, its /explorer/api/<method> answers changed too) to a real node and changes
its answers in one way (--mode):

  balance  account_proof and account_get say the account holds one base unit more
  history  account_history leaves out the oldest confirmed entry
  stale    account_proof keeps giving the first answer it got for an address
  forge    headers_get's last header claims the easiest target (too little work)

Prints the port it listens on (127.0.0.1, ephemeral), then serves until killed."""

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EASIEST_BITS = (0x207FFFFF).to_bytes(4, "little")
BITS_AT = 148  # version 4, height 8, prev 32, tx_root 32, state_root 32, miner 32, time 8

first_proofs = {}


def change(mode, method, params, result):
    if mode == "balance" and method in ("account_proof", "account_get"):
        account = result.get("account", result) if method == "account_proof" else result
        if account:
            account["balance"] = str(int(account["balance"]) + 1)
    elif mode == "history" and method == "account_history":
        confirmed = [t for t in result["txs"] if t.get("status") == "confirmed"]
        if confirmed:
            result["txs"].remove(confirmed[-1])
    elif mode == "stale" and method == "account_proof":
        result = first_proofs.setdefault(params.get("address"), result)
    elif mode == "forge" and method == "headers_get" and result["headers"]:
        header = bytearray(bytes.fromhex(result["headers"][-1]))
        header[BITS_AT : BITS_AT + 4] = EASIEST_BITS
        result["headers"][-1] = header.hex()
    return result


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        request = urllib.request.Request(self.server.upstream, data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        if self.headers.get("Authorization"):
            request.add_header("Authorization", self.headers["Authorization"])
        with urllib.request.urlopen(request, timeout=30) as response:
            reply = json.loads(response.read())
        call = json.loads(body)
        if "result" in reply and isinstance(reply["result"], dict):
            reply["result"] = change(
                self.server.mode, call.get("method"), call.get("params") or {}, reply["result"]
            )
        out = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self):
        url = self.server.upstream.rstrip("/") + self.path
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                status, kind, out = response.status, response.headers.get("Content-Type"), response.read()
        except urllib.error.HTTPError as error:
            status, kind, out = error.code, error.headers.get("Content-Type"), error.read()
        path = urllib.parse.urlsplit(self.path)
        if status == 200 and path.path.startswith("/explorer/api/"):
            method = path.path.rsplit("/", 1)[-1]
            params = dict(urllib.parse.parse_qsl(path.query))
            out = json.dumps(change(self.server.mode, method, params, json.loads(out))).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind or "application/octet-stream")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", required=True, choices=["balance", "history", "stale", "forge"])
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.mode = args.mode
    server.upstream = args.upstream
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
