#!/usr/bin/env python3
"""A DNS server for tests: answers A queries from a JSON file of {name: ipv4} that it reads
again for every query (a test moves a name by rewriting the file), with a TTL of 1 s.
Names not in the file: NXDOMAIN; other record types of a known name: no answer.

  dns.py HOST:PORT RECORDS.json
"""
import json, socket, struct, sys

host, port = sys.argv[1].rsplit(":", 1)
records = sys.argv[2]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((host, int(port)))
while True:
    data, peer = sock.recvfrom(1500)
    try:
        ident, = struct.unpack(">H", data[:2])
        i, labels = 12, []
        while data[i] != 0:
            labels.append(data[i + 1:i + 1 + data[i]].decode().lower())
            i += 1 + data[i]
        qtype, = struct.unpack(">H", data[i + 1:i + 3])
        question = data[12:i + 5]
        with open(records) as f:
            ip = json.load(f).get(".".join(labels))
    except (ValueError, IndexError, OSError, struct.error):
        continue
    answer = b""
    if ip and qtype == 1:
        answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 1, 4) + socket.inet_aton(ip)
    flags = 0x8180 | (0 if ip else 3)
    header = struct.pack(">HHHHHH", ident, flags, 1, 1 if answer else 0, 0, 0)
    sock.sendto(header + question + answer, peer)
