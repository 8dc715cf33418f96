"""A Python client for the arrears server (msgpack-RPC over TCP, SPEC §5).

One file, one dependency (Debian's python3-msgpack): copy it into a project
or `pip install clients/python`.

    from arrears_client import Client, NotFound

    with Client("127.0.0.1", 7420, token=None, timeout=30) as c:
        c.ping()
        r = c.arrears(20251110, ids=["110101195501010013"])
        print(r[0]["total"], r.policies)
        for page in c.scan("arrears.compute", as_of=20251110, page=10000):
            ...

What it does:
- `Client`: one connection, safe to share between threads. Requests are
  pipelined: `submit()` sends and returns a `Call` at once, `call_many()`
  sends a list and waits for all; answers are matched by msgid whatever their
  order. Msgids run 1 .. 2**32-1 and wrap (0 is never used: the server
  answers a frame it could not read with msgid 0 before it closes).
- `Pool`: a few `Client`s; each call goes to the connection with the fewest
  calls in flight. The server runs one connection's requests in arrival
  order, so several connections are what spread bulk work over its cores.
- Timeouts: `connect_timeout` for connecting (and `auth`), `timeout` for each
  call (from the moment it is sent). Both raise `Timeout`. A call that timed
  out is forgotten (its late answer is dropped); the connection stays open.
- Errors the server answers raise `ArrearsError` subclasses, one per code
  (`InvalidArgument`, `NotFound`, ...), carrying `code`, `name`, `message`
  and `at`. Per-person errors inside a bulk answer are data, not exceptions:
  entries `{"id", "error"}` in `results` (see `Results.errors()`).
- Reconnect: when the connection drops (the server closed it after a
  malformed or too large message, a reset, EOF), every call in flight on it
  fails with `ConnectionLost` and the next call connects again, sending
  `auth` first when a token was given. Nothing is retried by the client: a
  write that failed with `ConnectionLost` may or may not have been applied.
  Retry writes only with an `idem` key (the server then answers the first
  result again); retrying reads is always safe.
"""

import itertools
import queue
import socket
import threading
import time

import msgpack

__all__ = [
    "Client", "Pool", "Call", "Results",
    "Error", "ArrearsError", "Malformed", "UnknownMethod", "InvalidArgument", "NotFound", "Conflict",
    "TooLarge", "Overloaded", "Unauthorized", "Internal",
    "Timeout", "ConnectTimeout", "ConnectFailed", "ConnectionLost", "ProtocolError",
    "error_from",
]

__version__ = "1.0.0"

MSGID_MAX = 2 ** 32 - 1          # msgids are uint32; 0 is left out (connection-level errors)
ANSWER_BYTES_MAX = 1 << 30       # one answer; a city page with detail is tens of MiB at most
RECV_BYTES = 1 << 20             # one recv
SCAN_PAGE_MAX = 100000           # SPEC §5.1 scan.limit


# ---------------------------------------------------------------- exceptions

class Error(Exception):
    """Everything this module raises."""


class ArrearsError(Error):
    """An error answered by the server (SPEC §5): code, name, message, at."""
    code = None
    name = None

    def __init__(self, message="", at=None, code=None, name=None):
        super().__init__(message)
        self.message = message
        self.at = at
        if code is not None:
            self.code = code
        if name is not None:
            self.name = name

    def __str__(self):
        where = " at %s" % self.at if self.at else ""
        return "%s (%s)%s: %s" % (self.name, self.code, where, self.message)


class Malformed(ArrearsError):
    code, name = 1, "malformed"


class UnknownMethod(ArrearsError):
    code, name = 2, "unknown_method"


class InvalidArgument(ArrearsError):
    code, name = 3, "invalid_argument"


class NotFound(ArrearsError):
    code, name = 4, "not_found"


class Conflict(ArrearsError):
    code, name = 5, "conflict"


class TooLarge(ArrearsError):
    code, name = 6, "too_large"


class Overloaded(ArrearsError):
    code, name = 7, "overloaded"


class Unauthorized(ArrearsError):
    code, name = 8, "unauthorized"


class Internal(ArrearsError):
    code, name = 9, "internal"


ERRORS_BY_CODE = {cls.code: cls for cls in (Malformed, UnknownMethod, InvalidArgument, NotFound, Conflict,
                                            TooLarge, Overloaded, Unauthorized, Internal)}


class Timeout(Error, TimeoutError):
    """No answer (or no connection) within the timeout."""


class ConnectTimeout(Timeout):
    """Connecting (or the `auth` that follows) took longer than connect_timeout."""


class ConnectFailed(Error, ConnectionError):
    """Could not connect (refused, unreachable, name not found): nothing was sent."""


class ConnectionLost(Error, ConnectionError):
    """The connection dropped while the call was in flight: it may or may not
    have run. `cause` is the server's reason when it gave one (a `Malformed`
    or `TooLarge` answered before it closed), else None."""

    def __init__(self, message, cause=None):
        super().__init__(message)
        self.cause = cause


class ProtocolError(Error):
    """The server sent something that is not a msgpack-RPC response; the
    client closed the connection."""


def error_from(err):
    """The ArrearsError subclass instance for an error map {code, name, message, at}."""
    if not isinstance(err, dict):
        return ArrearsError(repr(err), code=None, name="unknown")
    code = err.get("code")
    cls = ERRORS_BY_CODE.get(code)
    message = err.get("message", "")
    if cls is None:
        return ArrearsError(message, err.get("at"), code=code, name=err.get("name"))
    return cls(message, err.get("at"))


# ---------------------------------------------------------------- results

class Results(list):
    """The `results` list of a bulk answer, with the rest of the answer map:
    `policies` (city -> policy revision used, when the server sends it),
    `next` (scan pages) and `answer` (the whole map)."""

    def __init__(self, answer):
        super().__init__(answer.get("results") or [])
        self.answer = answer
        self.policies = answer.get("policies")
        self.next = answer.get("next")

    def errors(self):
        """[(index, id, ArrearsError)] of the entries that are per-person (or per-item) errors."""
        return [(k, r.get("id"), error_from(r["error"])) for k, r in enumerate(self)
                if isinstance(r, dict) and r.get("error") is not None]


class Call:
    """One request sent and not yet answered (a future)."""

    __slots__ = ("method", "msgid", "deadline", "_event", "_result", "_error", "_conn")

    def __init__(self, method, msgid, deadline, conn):
        self.method = method
        self.msgid = msgid
        self.deadline = deadline  # time.monotonic() by which the answer is due
        self._event = threading.Event()
        self._result = None
        self._error = None
        self._conn = conn

    def _settle(self, result=None, error=None):
        self._result, self._error = result, error
        self._event.set()

    def done(self):
        return self._event.is_set()

    def result(self, timeout=None):
        """The result map; raises the server's error as an ArrearsError,
        `Timeout` when no answer came within `timeout` seconds (default: the
        client's timeout, counted from the send), `ConnectionLost`."""
        wait = self.deadline - time.monotonic() if timeout is None else timeout
        if wait == float("inf"):
            wait = None  # a client made with timeout=None waits as long as it takes
        if not self._event.wait(None if wait is None else max(0.0, wait)):
            self._conn._forget(self.msgid, self)
            if not self._event.is_set():
                raise Timeout("%s: no answer within %.3g s (msgid %d)" % (
                    self.method, max(0.0, wait), self.msgid))
        if self._error is not None:
            raise self._error
        return self._result

    def exception(self, timeout=None):
        try:
            self.result(timeout)
        except Error as e:
            return e
        return None


# ---------------------------------------------------------------- one connection

class _Conn:
    """A socket, its reader thread and the calls in flight on it. Dies once:
    then every call in flight fails and the Client makes a new one."""

    def __init__(self, sock, answer_bytes_max):
        self.sock = sock
        self.pending = {}                     # msgid -> Call
        self.lock = threading.Lock()          # pending, alive
        self.send_lock = threading.Lock()     # one frame at a time
        self.alive = True
        self.cause = None                     # the server's error with msgid 0, before it closed
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=answer_bytes_max)
        self.reader = threading.Thread(target=self._read_loop, name="arrears-client-reader", daemon=True)
        self.reader.start()

    def register(self, call):
        with self.lock:
            if not self.alive:
                return False
            self.pending[call.msgid] = call
            return True

    def in_flight(self):
        return len(self.pending)

    def _forget(self, msgid, call):
        with self.lock:
            if self.pending.get(msgid) is call:
                del self.pending[msgid]

    def send(self, data):
        with self.send_lock:
            self.sock.sendall(data)

    def _read_loop(self):
        reason = "the server closed the connection"
        try:
            while True:
                try:
                    data = self.sock.recv(RECV_BYTES)
                except socket.timeout:
                    continue
                if not data:
                    break
                self.unpacker.feed(data)
                for msg in self.unpacker:
                    self._dispatch(msg)
        except ProtocolError as e:
            reason = str(e)
        except (msgpack.exceptions.ExtraData, ValueError, msgpack.exceptions.UnpackException) as e:
            reason = "undecodable answer: %s" % e
        except OSError as e:
            reason = "connection error: %s" % e
        self.die(reason)

    def _dispatch(self, msg):
        if not (isinstance(msg, list) and len(msg) == 4 and msg[0] == 1 and isinstance(msg[1], int)):
            raise ProtocolError("not a msgpack-RPC response: %.100r" % (msg,))
        _, msgid, err, result = msg
        with self.lock:
            call = self.pending.pop(msgid, None)
        if call is None:
            if msgid == 0 and err is not None:
                self.cause = error_from(err)  # malformed / too_large: the server closes next
            return  # an answer to a call that timed out
        if err is not None:
            call._settle(error=error_from(err))
        else:
            call._settle(result=result)

    def die(self, reason):
        """Closes the socket and fails every call in flight (idempotent)."""
        with self.lock:
            if not self.alive:
                return
            self.alive = False
            calls = list(self.pending.values())
            self.pending.clear()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        if self.cause is not None:
            reason = "%s after the server answered %s" % (reason, self.cause)
        for call in calls:
            e = ConnectionLost("%s: connection lost (%s); it may or may not have run" % (call.method, reason),
                               self.cause)
            e.__cause__ = self.cause
            call._settle(error=e)


class _Methods:
    """Typed helpers over `call`/`submit`, shared by Client and Pool."""

    # -- plain methods

    def ping(self):
        return self.call("ping", {})

    def stats(self):
        return self.call("server.stats", {})

    def policy_put(self, policy):
        """Stores a city's policy; the answer map ({"ok", "revision", "warnings"})."""
        return self.call("policy.put", {"policy": policy})

    def policy_history(self, city):
        """A city's revisions, ascending: [{revision, stored_at, name, source}]."""
        return self.call("policy.history", {"city": city})["revisions"]

    def policy_get(self, city, revision=None):
        params = {"city": city}
        if revision is not None:
            params["revision"] = revision
        return self.call("policy.get", params)

    def person_put(self, persons, idem=None):
        """Replaces each person's record; `Results` of {id, ok} or {id, error}."""
        params = {"persons": list(persons)}
        if idem is not None:
            params["idem"] = idem
        return Results(self.call("person.put", params))

    def person_get(self, id):
        return self.call("person.get", {"id": id})["person"]

    def person_delete(self, id, idem=None):
        params = {"id": id}
        if idem is not None:
            params["idem"] = idem
        return self.call("person.delete", params)

    def payment_apply(self, items, idem):
        """Applies payments (R13). `idem` is required: a retry with the same key
        and items answers the first result again and pays nothing twice.
        `Results` of {ok} or {error} per item, in order."""
        if not isinstance(idem, str) or not idem:
            raise ValueError("payment_apply needs an idem key (a non-empty str)")
        return Results(self.call("payment.apply", {"idem": idem, "items": list(items)}))

    def withhold_run(self, idem, month, date, accounts):
        return Results(self.call("withhold.run", {"idem": idem, "month": month, "date": date,
                                                  "accounts": list(accounts)}))

    # -- compute methods: exactly one of ids, persons, scan

    def compute(self, method, as_of, ids=None, persons=None, scan=None, **params):
        chosen = [k for k, v in (("ids", ids), ("persons", persons), ("scan", scan)) if v is not None]
        if len(chosen) != 1:
            raise ValueError("%s: give exactly one of ids, persons, scan (got %s)" % (method, chosen or "none"))
        params["as_of"] = as_of
        if ids is not None:
            params["ids"] = list(ids)
        elif persons is not None:
            params["persons"] = list(persons)
        else:
            params["scan"] = scan
        return Results(self.call(method, params))

    def arrears(self, as_of, ids=None, persons=None, scan=None, detail=False, **params):
        if detail:
            params["detail"] = True
        return self.compute("arrears.compute", as_of, ids, persons, scan, **params)

    def years(self, as_of, ids=None, persons=None, scan=None, **params):
        return self.compute("years.compute", as_of, ids, persons, scan, **params)

    def retirement(self, as_of, ids=None, persons=None, scan=None, elect_month=None, **params):
        if elect_month is not None:
            params["elect_month"] = elect_month
        return self.compute("retirement.check", as_of, ids, persons, scan, **params)

    def housing(self, as_of, city, ids=None, persons=None, scan=None, **params):
        params["city"] = city
        return self.compute("housing.check", as_of, ids, persons, scan, **params)

    def medical(self, as_of, ids=None, persons=None, scan=None, **params):
        return self.compute("medical.status", as_of, ids, persons, scan, **params)

    # -- walking a city

    def scan(self, method, as_of, page=10000, after=None, prefix=None, **params):
        """Walks the stored persons in id order, one request per page (SPEC
        §5.1 `scan`), and yields each page as `Results` (per-person errors are
        entries, not exceptions). Starts after the id `after` (or an id
        prefix); with `prefix`, walks only the ids that start with it (from
        `after`, if given, else from the prefix) and stops at the first id
        past it. Request-level errors raise."""
        if not 1 <= page <= SCAN_PAGE_MAX:
            raise ValueError("page must be 1..%d" % SCAN_PAGE_MAX)
        if prefix is not None and after is None:
            after = prefix or None
        while True:
            res = self.compute(method, as_of, scan={"after": after, "limit": page}, **params)
            nxt = res.next
            if prefix:
                inside = [r for r in res if str(r.get("id", "")).startswith(prefix)]
                if len(inside) < len(res):
                    res[:] = inside
                    nxt = None  # walked past the prefix
            if len(res) > 0:
                yield res
            if nxt is None:
                return
            after = nxt

    def scan_parallel(self, method, as_of, prefixes, page=10000, walkers=4, **params):
        """Walks the persons whose id starts with each of `prefixes`, `walkers`
        prefixes at a time (on a Pool: over several connections), and yields
        pages as `Results` in the order they arrive. Prefixes should not
        overlap; ["0", ..., "9"] covers every id, but a city's ids share
        their area code, so split it by birth decade, say:
        [f"110105{y}" for y in range(193, 202)]. Each walker's last request
        computes up to `page` persons past its prefix that are dropped (the
        server's scan has no upper bound). Closing the generator early stops
        the walkers after the pages they are computing."""
        todo = queue.Queue()
        for p in prefixes:
            todo.put(p)
        out = queue.Queue(maxsize=2 * max(1, walkers))
        stop = threading.Event()
        done = object()

        def put(item):
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def walk():
            try:
                while not stop.is_set():
                    try:
                        p = todo.get_nowait()
                    except queue.Empty:
                        break
                    for res in self.scan(method, as_of, page=page, prefix=p, **dict(params)):
                        if not put(res):
                            return
            except Exception as e:  # noqa: BLE001 - handed to the consumer, raised there
                put(e)
            finally:
                put(done)

        threads = [threading.Thread(target=walk, name="arrears-scan-walker", daemon=True)
                   for _ in range(max(1, min(walkers, len(prefixes))))]
        for t in threads:
            t.start()
        running = len(threads)
        try:
            while running:
                item = out.get()
                if item is done:
                    running -= 1
                elif isinstance(item, Exception):
                    raise item
                else:
                    yield item
        finally:
            stop.set()
            for t in threads:
                t.join()


class Client(_Methods):
    """One connection to arrearsd, safe to use from several threads.

    Client(host, port, token=None, timeout=30.0, connect_timeout=5.0)

    Connects at once (raising ConnectFailed/ConnectTimeout/Unauthorized), and
    again on the next call after the connection dropped."""

    def __init__(self, host="127.0.0.1", port=7420, token=None, timeout=30.0, connect_timeout=5.0,
                 answer_bytes_max=ANSWER_BYTES_MAX, connect=True):
        self.host, self.port = host, port
        self.token = token
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.answer_bytes_max = answer_bytes_max
        self.reconnects = 0          # connections made after the first
        self._lock = threading.Lock()  # _conn, _msgid
        self._conn = None
        self._msgid = 0
        self._closed = False
        self._connected_once = False
        if connect:
            with self._lock:
                self._connection()

    # -- connection

    def _connection(self):
        """The live connection, made (and authenticated) when there is none. Holds self._lock."""
        if self._closed:
            raise Error("client closed")
        if self._conn is not None and self._conn.alive:
            return self._conn
        self._conn = None
        deadline = time.monotonic() + self.connect_timeout
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except socket.timeout as e:
            raise ConnectTimeout("connecting to %s:%s: no answer within %.3g s" % (
                self.host, self.port, self.connect_timeout)) from e
        except OSError as e:
            raise ConnectFailed("connecting to %s:%s: %s" % (self.host, self.port, e)) from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The timeout bounds sends (sendall: the whole frame); the reader just loops on it.
        sock.settimeout(max(self.timeout, 0.001) if self.timeout else None)
        conn = _Conn(sock, self.answer_bytes_max)
        if self.token is not None:
            call = self._send_on(conn, "auth", {"token": self.token}, deadline)
            try:
                call.result(max(0.0, deadline - time.monotonic()))
            except Timeout as e:
                conn.die("auth timed out")
                raise ConnectTimeout("auth on %s:%s: no answer within %.3g s" % (
                    self.host, self.port, self.connect_timeout)) from e
            except Error:
                conn.die("auth failed")
                raise
        if self._connected_once:
            self.reconnects += 1
        self._connected_once = True
        self._conn = conn
        return conn

    def _next_msgid(self, conn):
        while True:
            self._msgid = self._msgid % MSGID_MAX + 1  # 1 .. 2**32-1, wrapping; never 0
            if self._msgid not in conn.pending:
                return self._msgid

    def _send_on(self, conn, method, params, deadline):
        """Registers and sends one request on conn; the Call."""
        call = Call(method, self._next_msgid(conn), deadline, conn)
        data = msgpack.packb([0, call.msgid, method, [params]], use_bin_type=True)
        if not conn.register(call):
            raise ConnectionLost("%s: connection lost before sending" % method)
        try:
            conn.send(data)
        except socket.timeout as e:
            conn.die("send timed out")  # part of a frame may be out: the stream is unusable
            conn._forget(call.msgid, call)
            raise Timeout("%s: could not send within %.3g s" % (method, self.timeout)) from e
        except OSError as e:
            # The server may have answered why it closed (too_large, malformed):
            # let the reader take that answer before failing the calls in flight.
            conn.reader.join(timeout=1.0)
            conn.die("send failed: %s" % e)
        return call

    # -- calls

    def submit(self, method, params=None, timeout=None):
        """Sends one request now and returns its `Call`; `.result()` waits for
        the answer. `timeout` (default: the client's) counts from the send."""
        if params is None:
            params = {}
        deadline = _deadline(self.timeout if timeout is None else timeout)
        with self._lock:
            conn = self._connection()
            return self._send_on(conn, method, params, deadline)

    def call(self, method, params=None, timeout=None):
        """Sends one request and waits for its result map."""
        return self.submit(method, params, timeout).result()

    def call_many(self, requests, timeout=None, return_exceptions=False):
        """Sends every (method, params) back to back (pipelined), then waits
        for all; the results in request order. Every answer is due within
        `timeout` of the first send. Raises the first error (in request
        order) unless `return_exceptions`, which puts each failed call's
        exception in its place instead."""
        calls = []
        with self._lock:
            conn = self._connection()
            deadline = _deadline(self.timeout if timeout is None else timeout)
            for method, params in requests:
                calls.append(self._send_on(conn, method, params, deadline))
        return _collect(calls, return_exceptions)

    def auth(self, token):
        """Authenticates this connection and remembers the token for reconnects."""
        result = self.call("auth", {"token": token})
        self.token = token
        return result

    def in_flight(self):
        conn = self._conn
        return conn.in_flight() if conn is not None and conn.alive else 0

    def close(self):
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.die("closed by the client")
            conn.reader.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _deadline(timeout):
    return float("inf") if timeout is None else time.monotonic() + timeout


def _collect(calls, return_exceptions):
    out = []
    first = None
    for call in calls:
        try:
            out.append(call.result())
        except Error as e:
            if not return_exceptions:
                first = first or e
            out.append(e)
    if first is not None:
        raise first
    return out


class Pool(_Methods):
    """A small pool of connections, safe to share between threads.

    Pool(host, port, size=4, token=None, timeout=30.0, connect_timeout=5.0)

    Each call goes to the connection with the fewest calls in flight;
    connections are made when first needed. `with pool.client() as c:` lends
    one connection for requests that must run in order."""

    def __init__(self, host="127.0.0.1", port=7420, size=4, token=None, timeout=30.0, connect_timeout=5.0,
                 answer_bytes_max=ANSWER_BYTES_MAX):
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._clients = [Client(host, port, token=token, timeout=timeout, connect_timeout=connect_timeout,
                                answer_bytes_max=answer_bytes_max, connect=False) for _ in range(size)]
        self._lock = threading.Lock()
        self._turn = itertools.count()

    def _pick(self):
        with self._lock:
            start = next(self._turn)
            order = [self._clients[(start + k) % self.size] for k in range(self.size)]
        return min(order, key=lambda c: c.in_flight())

    def submit(self, method, params=None, timeout=None):
        return self._pick().submit(method, params, timeout)

    def call(self, method, params=None, timeout=None):
        return self.submit(method, params, timeout).result()

    def call_many(self, requests, timeout=None, return_exceptions=False):
        """Like Client.call_many, the requests spread over the connections
        (their relative order is not kept on the server)."""
        calls = [self.submit(m, p, timeout) for m, p in requests]
        return _collect(calls, return_exceptions)

    def auth(self, token):
        for c in self._clients:
            c.token = token
            if c._conn is not None and c._conn.alive:
                c.auth(token)
        return {"ok": True}

    class _Lease:
        def __init__(self, client):
            self.client = client

        def __enter__(self):
            return self.client

        def __exit__(self, *exc):
            return False

    def client(self):
        """A context manager lending one of the pool's connections (a Client)."""
        return Pool._Lease(self._pick())

    def close(self):
        for c in self._clients:
            c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
