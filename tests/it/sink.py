#!/usr/bin/python3
"""A loopback SMTP sink (aiosmtpd) standing in for the internal host: it
offers STARTTLS and AUTH PLAIN/LOGIN, optionally PIPELINING and XFORWARD,
and records each message it accepts as DIR/N.eml (the bytes received,
dot-unstuffed) plus DIR/N.json (envelope, TLS, AUTH user, XFORWARD
attributes). Files appear atomically (written, then renamed).

As a program:
    sink.py --port P --dir D [--cert C --key K] [--no-starttls]
            [--require-tls] [--auth USER:PASS] [--pipelining] [--xforward]
            [--reject ADDR=REPLY ...] [--hang N]
As a test helper:
    s = Sink(port, dir, cert=..., key=..., auth="u:p").start(); s.messages()
"""
import argparse
import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


class Sink:
    """Runs this file as a subprocess; stopped by PID."""

    def __init__(self, port, folder, cert=None, key=None, starttls=True,
                 require_tls=False, auth=None, pipelining=True,
                 xforward=True, reject=None, hang=0):
        self.port, self.dir = port, str(folder)
        os.makedirs(self.dir, exist_ok=True)
        self.args = ["/usr/bin/python3", os.path.join(HERE, "sink.py"),
                     "--port", str(port), "--dir", self.dir]
        if cert and starttls:
            self.args += ["--cert", cert, "--key", key]
        if require_tls:
            self.args.append("--require-tls")
        if auth:
            self.args += ["--auth", auth]
        if pipelining:
            self.args.append("--pipelining")
        if xforward:
            self.args.append("--xforward")
        for addr, reply in (reject or {}).items():
            self.args += ["--reject", "%s=%s" % (addr, reply)]
        if hang:
            self.args += ["--hang", str(hang)]
        self.proc = None

    def start(self):
        self.log = open(os.path.join(self.dir, "sink.log"), "ab")
        self.proc = subprocess.Popen(self.args, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sink exited %s" % self.proc.returncode)
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.5) as s:
                    s.recv(100)
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sink did not start on %d" % self.port)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def messages(self):
        """[(envelope dict, content bytes)] in arrival order."""
        out = []
        names = [n for n in os.listdir(self.dir) if n.endswith(".json")]
        for n in sorted(names, key=lambda s: int(s.split(".")[0])):
            with open(os.path.join(self.dir, n)) as f:
                env = json.load(f)
            with open(os.path.join(self.dir, n[:-5] + ".eml"), "rb") as f:
                out.append((env, f.read()))
        return out

    def wait_messages(self, n, timeout=20.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = self.messages()
            if len(m) >= n:
                return m
            time.sleep(0.05)
        return self.messages()


_PUT_LUA = """
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i+1]) end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return 1
"""


def new_qid():
    """A queue id in shared/queue.c's style (20 upper-case hex digits)."""
    return "%08X%05X%07X" % (int(time.time()) & 0xffffffff,
                             int(time.time() * 1e6) % 0x100000,
                             int.from_bytes(os.urandom(4), "big") & 0xfffffff)


def put_message(redis, sender, rcpts, data, queue="mx", qid=None,
                arrival=None, body8bit=0):
    """Queue a message the way shared/queue.c's queue_put does (one Lua
    script: envelope hash mq:Q:m:QID, data mq:Q:d:QID, schedule
    mq:Q:sched), for tests that feed the forwarder without the inbound
    server. Returns the queue id."""
    qid = qid or new_qid()
    now_ms = int(time.time() * 1000)
    fields = {"qid": qid, "sender": sender, "client_name": "client.example",
              "client_addr": "192.0.2.9", "helo": "client.example",
              "proto": "ESMTP", "arrival": str(arrival or int(time.time())),
              "size": str(len(data)), "smtputf8": "0",
              "body8bit": str(body8bit), "state": "active",
              "next": str(now_ms), "attempts": "0", "lease": "0",
              "nrcpt": str(len(rcpts))}
    for i, r in enumerate(rcpts):
        fields["r%d" % i] = r
        fields["s%d" % i] = "0"
    args = ["EVAL", _PUT_LUA, "3", "mq:%s:m:%s" % (queue, qid),
            "mq:%s:d:%s" % (queue, qid), "mq:%s:sched" % queue, qid,
            str(now_ms), data]
    for k, v in fields.items():
        args += [k, v]
    redis.command(*args)
    return qid


def _serve(opts):
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

    rejects = {}
    for r in opts.reject or []:
        addr, reply = r.split("=", 1)
        rejects[addr.lower()] = reply
    state = {"n": 0, "hang": opts.hang}
    user, _, password = (opts.auth or "").partition(":")

    class Handler:
        async def handle_EHLO(self, server, session, envelope, hostname,
                              responses):
            session.host_name = hostname
            extra = []
            if opts.pipelining:
                extra.append("250-PIPELINING")
            if opts.xforward:
                extra.append("250-XFORWARD NAME ADDR PROTO HELO IDENT")
            return responses[:-1] + extra + responses[-1:]

        async def handle_RCPT(self, server, session, envelope, address,
                              rcpt_options):
            if address.lower() in rejects:
                return rejects[address.lower()]
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 Ok"

        async def handle_DATA(self, server, session, envelope):
            if state["hang"] > 0:
                state["hang"] -= 1
                await asyncio.sleep(3600)   # never answers, never records
            state["n"] += 1
            n = state["n"]
            meta = {
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "mail_options": envelope.mail_options,
                "tls": session.ssl is not None,
                "auth_user": (session.auth_data.login.decode()
                              if isinstance(session.auth_data, LoginPassword)
                              else None),
                "xforward": getattr(session, "xforward", {}),
            }
            base = os.path.join(opts.dir, str(n))
            with open(base + ".eml.tmp", "wb") as f:
                f.write(envelope.original_content)
            os.rename(base + ".eml.tmp", base + ".eml")
            with open(base + ".json.tmp", "w") as f:
                json.dump(meta, f)
            os.rename(base + ".json.tmp", base + ".json")
            return "250 2.0.0 Ok: queued as SINK%d" % n

    def authenticator(server, session, envelope, mechanism, data):
        ok = (isinstance(data, LoginPassword) and
              data.login.decode() == user and
              data.password.decode() == password)
        return AuthResult(success=ok, handled=False, auth_data=data)

    class XSMTP(SMTP):
        async def smtp_XFORWARD(self, arg):
            if not opts.xforward:
                await self.push("500 5.5.2 Error: command not recognized")
                return
            xf = getattr(self.session, "xforward", {})
            for item in (arg or "").split():
                k, _, v = item.partition("=")
                xf[k.upper()] = v
            self.session.xforward = xf
            await self.push("250 2.0.0 Ok")

    ctx = None
    if opts.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(opts.cert, opts.key)

    def factory():
        return XSMTP(Handler(), tls_context=ctx,
                     require_starttls=opts.require_tls,
                     auth_required=bool(opts.auth),
                     auth_require_tls=True,
                     authenticator=authenticator if opts.auth else None,
                     decode_data=False, enable_SMTPUTF8=True,
                     hostname="sink.test")

    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        loop.create_server(factory, "127.0.0.1", opts.port))
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    try:
        loop.run_forever()
    finally:
        server.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--no-starttls", action="store_true")
    p.add_argument("--require-tls", action="store_true")
    p.add_argument("--auth")
    p.add_argument("--pipelining", action="store_true")
    p.add_argument("--xforward", action="store_true")
    p.add_argument("--reject", action="append")
    p.add_argument("--hang", type=int, default=0)
    opts = p.parse_args()
    if opts.no_starttls:
        opts.cert = None
    os.makedirs(opts.dir, exist_ok=True)
    _serve(opts)


if __name__ == "__main__":
    sys.exit(main())
