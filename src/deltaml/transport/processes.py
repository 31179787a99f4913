"""The owners in worker processes: a simulation that uses every core.

The in-process simulation stands for many machines, but its owners' work is Python
code that holds the GIL, so threads do not help (see
:class:`~deltaml.transport.in_memory.InMemoryTransport`). :class:`ProcessTransport`
forks worker processes once the parties are built; each worker holds a fixed subset of
the owners, whose state from then on lives only there, and answers their requests. The
parties kept local (the buyer) are answered in this process, like the aggregator's own
work. :meth:`~ProcessTransport.request_all` sends each worker its share of the requests
at once, so independent owners work on separate cores.

Messages cross as pickles (a public key by its ``(n, h_s)``, decoded to the process's
one object for that key); a party's error comes back as the same exception, with the
same one-line message. The workers ignore SIGINT and end when told to, when this
process closes its end of their pipe, or when :meth:`~ProcessTransport.close`
terminates them: use the transport as a context manager (:func:`party_transport`).
"""

from __future__ import annotations

import collections
import contextlib
import copyreg
import gc
import io
import multiprocessing
import os
import pickle
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from multiprocessing.connection import Connection
from typing import Any

from deltaml.crypto import PublicKey, paillier
from deltaml.errors import DeltaMLValueError, ProtocolError
from deltaml.protocol.messages import Message
from deltaml.transport.base import OutOfProcessCpu, Party, Transport
from deltaml.transport.in_memory import InMemoryTransport

__all__ = ["MIN_OWNERS_PER_WORKER", "ProcessTransport", "auto_workers", "party_transport"]

#: Below this many owners per worker, spreading them costs more than it saves
#: (measured: docs/performance.md, "Owners on both cores").
MIN_OWNERS_PER_WORKER = 8
#: How long a worker may take to stop when asked before it is terminated.
STOP_SECONDS = 5.0

_Reply = tuple[int, str, bool, Any, float]  # index, party, ok, reply or error, CPU seconds


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def auto_workers(owners: int, cores: int | None = None) -> int:
    """How many worker processes a simulation of ``owners`` owners uses by default:
    one per core while each gets at least :data:`MIN_OWNERS_PER_WORKER` owners; 1
    (the owners in this process) on one core or with few owners."""
    cores = usable_cores() if cores is None else cores
    return max(1, min(cores, owners // MIN_OWNERS_PER_WORKER))


# -- pickling ---------------------------------------------------------------------------
def _reduce_key(key: PublicKey) -> tuple[Callable[[int, int], PublicKey], tuple[int, int]]:
    return PublicKey.of, (key.n, key.hs)


_DISPATCH = copyreg.dispatch_table.copy()
_DISPATCH[PublicKey] = _reduce_key


def _dumps(obj: object) -> bytes:
    """Pickle ``obj``; a public key goes as ``PublicKey.of(n, h_s)``: the receiving
    process's one object for that key (its window table and randomizer pool), not a copy."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(obj)
    return buffer.getvalue()


def _pack_error(exc: Exception) -> bytes:
    """A party's exception, to be rebuilt as the same type with the same message
    (without calling its ``__init__``, whose signature may differ from its args)."""
    for state in (
        (type(exc), exc.args, dict(vars(exc))),
        (type(exc), (str(exc),), {}),
        (ProtocolError, (f"{type(exc).__name__}: {exc}",), {}),
    ):
        try:
            return _dumps(state)
        except Exception:  # an attribute or type that does not pickle
            continue
    raise AssertionError("unreachable: a ProtocolError with a str always pickles")


def _unpack_error(data: bytes) -> Exception:
    cls, args, attributes = pickle.loads(data)
    exc: Exception = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(attributes)
    return exc


# -- the worker -------------------------------------------------------------------------
def _serve(conn: Connection, parties: dict[str, Party]) -> None:
    """Answer batches of ``(index, party id, message)`` until told to stop (``None``) or
    the pipe closes; each reply carries its party's CPU seconds, and the batch the
    worker's whole CPU time so far."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process shuts us down
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    # The workers keep the cores busy: a randomizer thread per worker would only take
    # CPU from them (it spends a full exponentiation where the table spends ~1/8 of one).
    paillier.RANDOMIZER_POOL_CAPACITY = 0
    while True:
        try:
            batch = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if batch is None:
            return
        out: list[_Reply] = []
        for index, party_id, message in batch:
            c0 = time.thread_time()
            value: object
            try:
                ok, value = True, parties[party_id].handle(message)
            except Exception as exc:  # the caller re-raises it
                ok, value = False, _pack_error(exc)
            out.append((index, party_id, ok, value, time.thread_time() - c0))
            if not ok:
                break  # like in process: the requests after a failure are not delivered
        try:
            conn.send_bytes(_dumps((out, time.process_time())))
        except (BrokenPipeError, OSError):
            return


class _Worker:
    def __init__(self, number: int, process: Any, conn: Connection, parties: list[str]) -> None:
        self.number, self.process, self.conn, self.parties = number, process, conn, parties
        self.cpu_reported = 0.0  # the worker's process CPU at its last reply

    @property
    def label(self) -> str:
        return f"(worker {self.number})"

    def send(self, batch: list[tuple[int, str, Message]]) -> None:
        try:
            self.conn.send_bytes(_dumps(batch))
        except (BrokenPipeError, OSError):
            raise self.stopped() from None

    def receive(self) -> tuple[list[_Reply], float]:
        try:
            replies, cpu = pickle.loads(self.conn.recv_bytes())
        except (EOFError, OSError):
            raise self.stopped() from None
        return replies, cpu

    def stopped(self) -> ProtocolError:
        self.process.join(timeout=1.0)
        code = self.process.exitcode
        how = "is still running" if code is None else f"exit code {code}"
        return ProtocolError(
            f"the worker process holding {len(self.parties)} owner(s) stopped ({how})"
        )


class ProcessTransport(Transport):
    """The ``remote`` parties in ``workers`` forked processes, the ``local`` ones here.

    The workers are forked in the constructor: build every party first. Use it as a
    context manager (or call :meth:`close`): it stops the workers on every way out.
    """

    def __init__(self, local: Sequence[Party], remote: Sequence[Party], workers: int) -> None:
        if workers < 1:
            raise DeltaMLValueError("--workers must be at least 1")
        if "fork" not in multiprocessing.get_all_start_methods():
            raise DeltaMLValueError("--workers above 1 needs fork (Linux or macOS); use 1")
        counts = collections.Counter(p.party_id for p in [*local, *remote])
        for party_id in (i for i, n in counts.items() if n > 1):
            raise ProtocolError(f"party {party_id!r} is already connected")
        self._local = InMemoryTransport(list(local))
        self._local_ids = {p.party_id for p in local}
        self._home: dict[str, _Worker] = {}
        self._cpu: dict[str, float] = {}
        self._broken = self._closed = False
        groups = [list(remote[i::workers]) for i in range(workers)]
        groups = [g for g in groups if g]
        pipes = [multiprocessing.Pipe(duplex=True) for _ in groups]
        ctx = multiprocessing.get_context("fork")
        self._workers: list[_Worker] = []
        # The parties' objects go to the permanent generation first: a worker's garbage
        # collections then leave them alone instead of copying every page they sit on.
        gc.freeze()
        # Ctrl-C goes to the whole process group: a worker ignores it (this process stops
        # the workers), so it must not arrive before the worker can say so.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            for number, (group, (mine, theirs)) in enumerate(zip(groups, pipes, strict=True)):
                process = ctx.Process(
                    target=_child,
                    args=(theirs, pipes, {p.party_id: p for p in group}),
                    name=f"deltaml-owners-{number + 1}",
                    daemon=True,  # a main process that exits takes them along
                )
                process.start()
                worker = _Worker(number + 1, process, mine, [p.party_id for p in group])
                self._workers.append(worker)
                self._home.update({party.party_id: worker for party in group})
        except BaseException:
            self._broken = True
            self.close()
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            gc.unfreeze()
            for _, theirs in pipes:
                theirs.close()

    # -- requests ----------------------------------------------------------------------
    def request(self, party_id: str, message: Message) -> Message:
        return self.request_all([(party_id, message)])[0]

    def request_all(self, requests: Sequence[tuple[str, Message]]) -> list[Message]:
        """Each worker gets its requests at once; the local ones are answered meanwhile.

        The error raised is the first failing request's, in request order (after every
        worker has answered, so the transport stays usable).
        """
        if self._broken or self._closed:
            raise ProtocolError("the owners' worker processes have been shut down")
        batches: dict[int, list[tuple[int, str, Message]]] = {}
        local: list[tuple[int, str, Message]] = []
        for index, (party_id, message) in enumerate(requests):
            worker = self._home.get(party_id)
            if worker is not None:
                batches.setdefault(worker.number, []).append((index, party_id, message))
            elif party_id in self._local_ids:
                local.append((index, party_id, message))
            else:
                raise ProtocolError(f"no party {party_id!r} is connected")
        replies: list[Any] = [None] * len(requests)
        errors: dict[int, Exception] = {}
        try:
            sent = [self._workers[number - 1] for number in sorted(batches)]
            for worker in sent:
                worker.send(batches[worker.number])
            for index, party_id, message in local:
                try:
                    replies[index] = self._local.request(party_id, message)
                except Exception as exc:  # raised below, after the workers
                    errors[index] = exc
                    break
            for worker in sent:
                self._collect(worker, replies, errors)
        except BaseException:
            self._broken = True  # a reply may be left in a pipe: no further use
            raise
        if errors:
            raise errors[min(errors)]
        return replies

    def _collect(self, worker: _Worker, replies: list[Any], errors: dict[int, Exception]) -> None:
        answers, process_cpu = worker.receive()
        counted = 0.0
        for index, party_id, ok, value, cpu in answers:
            self._cpu[party_id] = self._cpu.get(party_id, 0.0) + cpu
            counted += cpu
            if ok:
                replies[index] = value
            else:
                errors[index] = _unpack_error(value)
        # The worker's other CPU (reading and writing the pickles) is owners' work too.
        rest = max(process_cpu - worker.cpu_reported - counted, 0.0)
        worker.cpu_reported = process_cpu
        self._cpu[worker.label] = self._cpu.get(worker.label, 0.0) + rest

    def cpu_seconds(self) -> Mapping[str, float]:
        """The owners' CPU seconds, counted in their workers (and each worker's time
        besides answering under ``"(worker k)"``): none of it is this process's."""
        return OutOfProcessCpu(self._cpu)

    # -- shutting down -----------------------------------------------------------------
    def close(self) -> None:
        """Stop every worker: asked to when the transport is idle, else terminated."""
        for worker in self._workers:
            if not self._broken:
                with contextlib.suppress(OSError):
                    worker.conn.send_bytes(_dumps(None))
            else:
                worker.process.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for worker in self._workers:
            worker.process.join(timeout=max(deadline - time.monotonic(), 0.1))
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(timeout=STOP_SECONDS)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        self._workers = []
        self._home = {}
        self._closed = True

    def __enter__(self) -> ProcessTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self._broken = True
        self.close()

    @property
    def pids(self) -> list[int]:
        """The workers' process ids (while they run)."""
        return [w.process.pid for w in self._workers if w.process.pid is not None]


def _child(conn: Connection, pipes: list[tuple[Connection, Connection]], parties: Any) -> None:
    """A worker's start: close every pipe end but its own (so that each worker sees the
    end of the main process, not the copies of it its siblings hold), then serve."""
    for mine, theirs in pipes:
        mine.close()
        if theirs is not conn:
            theirs.close()
    _serve(conn, parties)


@contextlib.contextmanager
def party_transport(
    local: Sequence[Party],
    remote: Sequence[Party],
    workers: int | None,
    wrapper: Callable[[Transport], Transport] | None = None,
) -> Iterator[Transport]:
    """The simulation's transport: every party in this process (``workers`` 1), or the
    ``remote`` ones spread over ``workers`` processes (``None``: :func:`auto_workers`),
    wrapped by ``wrapper`` (a test's recorder); the workers stop on the way out."""
    count = auto_workers(len(remote)) if workers is None else workers
    if count < 1:
        raise DeltaMLValueError("--workers must be at least 1")
    if count == 1:
        inner: Transport = InMemoryTransport([*local, *remote])
        yield wrapper(inner) if wrapper is not None else inner
        return
    with ProcessTransport(local, remote, count) as processes:
        yield wrapper(processes) if wrapper is not None else processes
