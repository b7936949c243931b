#!/usr/bin/env python3
"""SMTP sink for Dovecot's submission relay (aiosmtpd, Debian's python3-aiosmtpd).

Usage: sink.py ADDR PORT DIR [PIDFILE]

Every accepted message is stored as DIR/NNNNNN.eml holding the DATA bytes exactly as
received (dot-unstuffed, CRLF line endings), plus DIR/NNNNNN.json with the envelope
(mail_from, rcpt_tos, peer). The .json is written first and the .eml is renamed into
place last, so a test that sees NNNNNN.eml sees a complete message.
"""
import asyncio, itertools, json, os, signal, sys

from aiosmtpd.smtp import SMTP


class FileSink:
    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        existing = [int(n[:6]) for n in os.listdir(directory) if n[:6].isdigit()]
        self.counter = itertools.count(max(existing, default=0) + 1)

    async def handle_DATA(self, server, session, envelope):
        name = "%06d" % next(self.counter)
        meta = {"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos),
                "peer": list(session.peer[:2]) if session.peer else None}
        with open(os.path.join(self.dir, name + ".json"), "w") as f:
            json.dump(meta, f)
        tmp = os.path.join(self.dir, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(tmp, os.path.join(self.dir, name + ".eml"))
        return "250 OK stored as " + name


def main():
    addr, port, directory = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    pidfile = sys.argv[4] if len(sys.argv) > 4 else None
    handler = FileSink(directory)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    factory = lambda: SMTP(handler, hostname="sink.example.test", decode_data=False,
                           data_size_limit=256 * 1024 * 1024, enable_SMTPUTF8=True,
                           ident="mailtun test sink")
    server = loop.run_until_complete(loop.create_server(factory, host=addr, port=port))
    if pidfile:
        with open(pidfile, "w") as f:
            f.write("%d\n" % os.getpid())
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, loop.stop)
    try:
        loop.run_forever()
    finally:
        server.close()
        if pidfile:
            try:
                os.unlink(pidfile)
            except FileNotFoundError:
                pass


if __name__ == "__main__":
    main()
