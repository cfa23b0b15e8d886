"""durable-rules behind a narrow interface, in a supervised worker process.

The C engine runs only in the worker (``serve``), so a crash or a hang in it cannot take the
API down. ``DurableEngine`` is the client: ``load(ruleset)``, ``matching(ruleset, facts)``
(the reference's answer: rule ids in file order; a first-hit ruleset answers its deciding rule
only, as events are consumed by the first rule that fires), ``unload``, ``close``. A call that
finds the worker dead, or gets no answer in time, raises ``EngineUnavailable`` once; the next
call starts a new worker and loads every ruleset again.

Inside the worker (``Runtime``): one lane (sid "0"), a fresh message id per post; a first-hit
ruleset gets each chunk's message as an event (consumed by the first rule by pri), a collect
ruleset as a fact, asserted and then retracted, so every rule fires and nothing stays in the
engine's state. durable swallows an exception raised by a rule's action into the state's
``exception``: it is read after every post that fired and becomes ``ActionError``."""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import pickle
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from typing import Any

from central.rules.compile import (
    SID,
    CompiledRuleset,
    chunk_message,
    compile_ruleset,
    dumps,
    encode_facts,
    ruleset_name,
)
from fieldloop.rules.conditions import holds
from fieldloop.rules.files import RuleSet


class EngineError(RuntimeError):
    """The rules engine could not answer this call."""


class EngineUnavailable(EngineError):
    """The worker is gone (crashed, killed, or too slow); the next call starts a new one."""


class ActionError(EngineError):
    """A rule's action raised inside durable-rules (which would have swallowed it)."""


# --- inside the worker ----------------------------------------------------------------------


@functools.cache
def _durable() -> tuple[Any, Any, type]:
    """durable-rules, imported on first use: the API process never loads the C engine."""
    import durable_rules_engine as c_engine
    from durable import engine

    class DurableRuleset(engine.Ruleset):  # type: ignore[misc]
        """durable's Ruleset (its action machinery, where exceptions are swallowed) created
        from our JSON text: its own json.dumps would write floats durable cannot parse."""

        def __init__(self, name: str, definition: str, actions: dict[str, Callable]) -> None:
            self._name = name
            self._host = None  # actions post nowhere
            self._definition = definition
            self._actions = {rule: engine.Promise(fn) for rule, fn in actions.items()}
            self._handle = c_engine.create_ruleset(name, definition)

        def run(self, c_call: Callable[[int, str], Any], text: str) -> bool:
            """Post ``text`` with ``c_call`` and run the actions it fires; False if no rule
            took the message."""
            try:
                state = self._handle_result(c_call(self._handle, text), text)
            except engine.MessageNotHandledException:
                return False
            self._actions_of(state)
            return True

        def _actions_of(self, state: Any) -> None:
            failed: list[Any] = []
            self.do_actions(state, lambda error, _state: failed.append(error) if error else None)
            if failed:
                raise EngineError(f"durable-rules: {failed[0]}")

        def take_exception(self) -> str | None:
            """The exception an action left in the lane's state, cleared."""
            text = c_engine.get_state(self._handle, SID)
            if '"exception"' not in text:  # the usual case, without parsing the state
                return None
            state = json.loads(text)
            reason = state.pop("exception", None)
            if reason is not None:
                self._actions_of(self.update_state(state))
            return reason

        def delete(self) -> None:
            c_engine.delete_ruleset(self._handle)

    return engine, c_engine, DurableRuleset


class Runtime:
    """Compiled rulesets in durable-rules, in this process (the worker's; tests and the bench
    may use it directly)."""

    def __init__(self) -> None:
        self._rulesets: dict[str, tuple[CompiledRuleset, Any]] = {}
        self._fired: list[str] = []
        self._next_id = 0

    def load(self, compiled: CompiledRuleset) -> None:
        if compiled.name not in self._rulesets:
            self._rulesets[compiled.name] = (compiled, self._create(compiled))

    def _create(self, compiled: CompiledRuleset) -> Any:
        _, _, durable_ruleset = _durable()
        actions = {p.name: self._action(p.name) for p in compiled.pieces}
        return durable_ruleset(compiled.name, compiled.to_json(), actions)

    def _action(self, piece: str) -> Callable[[Any], None]:
        def run(c: Any) -> None:  # one argument: durable runs it synchronously
            self._record(piece)

        return run

    def _record(self, piece: str) -> None:
        self._fired.append(piece)

    def unload(self, name: str) -> None:
        entry = self._rulesets.pop(name, None)
        if entry is not None:
            entry[1].delete()

    def loaded(self) -> list[str]:
        return list(self._rulesets)

    def match(self, name: str, facts: Mapping[str, Any]) -> list[str]:
        entry = self._rulesets.get(name)
        if entry is None:
            raise EngineError(f"ruleset {name} is not loaded")
        compiled, ruleset = entry
        base = encode_facts(compiled, facts)
        atoms: dict[int, bool] = {}

        def atom(i: int) -> bool:  # computed once per call, and only for chunks posted
            if i not in atoms:
                atoms[i] = holds(compiled.atoms[i], facts)
            return atoms[i]

        rule_of = compiled.rule_of_piece
        hits: set[str] = set()
        for chunk in compiled.chunks:
            fired = self._post(compiled, ruleset, chunk_message(compiled, chunk, base, atom))
            if fired and compiled.mode == "first_hit":
                # the event went to the first rule by pri; a chunk's rules all come after
                # those of earlier chunks
                return [min((rule_of[p] for p in fired), key=compiled.position.__getitem__)]
            hits.update(rule_of[p] for p in fired)
        return sorted(hits, key=compiled.position.__getitem__)

    def _post(self, compiled: CompiledRuleset, ruleset: Any, message: dict[str, Any]) -> list[str]:
        _, c_engine, _ = _durable()
        self._next_id += 1
        message["id"] = self._next_id
        message["sid"] = SID
        text = dumps(message)
        self._fired = []
        try:
            if compiled.mode == "first_hit":
                took = ruleset.run(c_engine.assert_event, text)
            else:
                took = ruleset.run(c_engine.assert_fact, text)
                if took:
                    ruleset.run(c_engine.retract_fact, text)
            reason = ruleset.take_exception() if took else None
        except EngineError:
            self._reset(compiled)
            raise
        except Exception as exc:  # durable_rules_engine.error and the like
            self._reset(compiled)
            raise EngineError(f"durable-rules: {exc}") from exc
        if reason is not None:
            raise ActionError(f"a rule action failed inside durable-rules: {reason[:2000]}")
        return self._fired

    def _reset(self, compiled: CompiledRuleset) -> None:
        # after an engine error the lane's state may hold half a message: start it afresh
        self.unload(compiled.name)
        self.load(compiled)


class Channel:
    """Pickled messages over the pipe's socket, each after its length: one write and, mostly,
    one read per message, and reads against a deadline (a third of a multiprocessing
    Connection's poll-then-recv round trip)."""

    _header = struct.Struct("!Q")

    def __init__(self, conn: Connection) -> None:
        self._sock = socket.socket(fileno=os.dup(conn.fileno()))
        conn.close()
        self._buf = bytearray()
        self._timeout: float | None = None  # as set on the socket (settimeout costs syscalls)

    def send(self, message: Any) -> None:
        data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        self._sock.sendall(self._header.pack(len(data)) + data)

    def recv(self, timeout: float | None = None) -> Any:
        """The next message; TimeoutError after ``timeout`` s, EOFError if the peer is gone."""
        if timeout != self._timeout:
            self._sock.settimeout(timeout)
            self._timeout = timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        (size,) = self._header.unpack(self._read(self._header.size, deadline))
        return pickle.loads(self._read(size, deadline))

    def _read(self, n: int, deadline: float | None) -> bytes:
        while len(self._buf) < n:
            # each recv waits up to the timeout; a message in several reads (over 64 KiB) is
            # also held to the deadline as a whole
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("timed out")
            chunk = self._sock.recv(max(n - len(self._buf), 1 << 16))
            if not chunk:
                raise EOFError("the other end closed the channel")
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def close(self) -> None:
        self._sock.close()


def serve(conn: Connection) -> None:
    """The worker's loop: one request, one reply, until "stop" or the client goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the client decides when the worker ends
    channel = Channel(conn)
    runtime = Runtime()
    channel.send(("ready", os.getpid()))
    while True:
        try:
            op, *args = channel.recv()
        except (EOFError, OSError):
            return
        if op == "stop":
            channel.send(("ok", None))
            return
        try:
            if op == "load":
                runtime.load(args[0])
                result: Any = None
            elif op == "unload":
                runtime.unload(args[0])
                result = None
            elif op == "match":
                result = runtime.match(args[0], args[1])
            else:
                raise EngineError(f"unknown request {op!r}")
            reply: tuple[str, Any] = ("ok", result)
        except ActionError as exc:
            reply = ("action", str(exc))
        except EngineError as exc:
            reply = ("engine", str(exc))
        except ValueError as exc:  # facts the engine cannot compare exactly
            reply = ("value", str(exc))
        except Exception as exc:
            reply = ("engine", f"{type(exc).__name__}: {exc}")
        channel.send(reply)


# --- the client -----------------------------------------------------------------------------


class DurableEngine:
    """durable-rules in a worker process, supervised. Thread-safe: one call at a time."""

    name = "durable-rules"

    def __init__(
        self, *, timeout: float = 2.0, load_timeout: float = 60.0, start_timeout: float = 60.0
    ) -> None:
        self.timeout = timeout  # per matching call
        self.load_timeout = load_timeout  # per ruleset loaded (large files take a while)
        self.start_timeout = start_timeout
        self._lock = threading.Lock()
        self._compiled: dict[str, CompiledRuleset] = {}  # loaded again after a restart
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._channel: Channel | None = None
        self._in_worker: set[str] = set()
        self._closed = False

    # the interface

    def load(self, ruleset: RuleSet) -> CompiledRuleset:
        """Compile ``ruleset`` (CompileError if durable cannot evaluate it exactly) and load it
        into the worker."""
        compiled = self._compiled.get(ruleset_name(ruleset)) or compile_ruleset(ruleset)
        with self._lock:
            self._compiled[compiled.name] = compiled
            self._ensure_worker()
            self._load(compiled)
        return compiled

    def unload(self, ruleset: RuleSet) -> None:
        name = ruleset_name(ruleset)
        with self._lock:
            if self._compiled.pop(name, None) is not None and name in self._in_worker:
                self._in_worker.discard(name)
                self._request(("unload", name), self.timeout)

    def matching(self, ruleset: RuleSet, facts: Mapping[str, Any]) -> list[str]:
        """The ids of the rules that match ``facts`` (as ``normalise_facts`` makes them), in
        file order; for a first-hit ruleset only the first. Loads ``ruleset`` if need be."""
        name = ruleset_name(ruleset)
        if name not in self._compiled:
            self.load(ruleset)
        with self._lock:
            self._ensure_worker()
            if name not in self._in_worker:
                self._load(self._compiled[name])
            return self._request(("match", name, dict(facts)), self.timeout)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._channel is not None and self._proc is not None and self._proc.is_alive():
                try:
                    self._channel.send(("stop",))
                    self._channel.recv(1.0)
                except (EOFError, OSError):  # TimeoutError included
                    pass
            self._discard()

    def __enter__(self) -> DurableEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def worker_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # supervision (the lock held)

    def _ensure_worker(self) -> None:
        if self._closed:
            raise EngineError("the engine is closed")
        if self._proc is not None:
            return  # if it died, the call finds the channel closed
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter, no inherited state
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=serve, args=(child,), name="durable-rules", daemon=True)
        proc.start()
        child.close()
        self._proc, self._channel = proc, Channel(parent)
        try:
            self._channel.recv(self.start_timeout)  # ("ready", pid)
        except (EOFError, OSError) as exc:
            raise EngineUnavailable(
                f"the durable-rules worker did not start: it {self._discard()}"
            ) from exc
        for compiled in self._compiled.values():
            self._load(compiled)

    def _load(self, compiled: CompiledRuleset) -> None:
        self._request(("load", compiled), self.load_timeout)
        self._in_worker.add(compiled.name)

    def _request(self, request: tuple[Any, ...], timeout: float) -> Any:
        channel = self._channel
        assert channel is not None
        try:
            channel.send(request)
            kind, value = channel.recv(timeout)
        except TimeoutError as exc:
            self._discard()
            raise EngineUnavailable(
                f"the durable-rules worker gave no answer within {timeout:g} s and was "
                "stopped; a new one starts on the next call"
            ) from exc
        except (EOFError, OSError) as exc:
            raise EngineUnavailable(
                f"the durable-rules worker {self._discard()}; a new one starts on the next call"
            ) from exc
        if kind == "ok":
            return value
        if kind == "value":
            raise ValueError(value)
        if kind == "action":
            raise ActionError(value)
        raise EngineError(value)

    def _discard(self) -> str:
        """Stop the worker (if it still runs) and forget it; how it ended, in words."""
        proc, channel = self._proc, self._channel
        self._proc, self._channel = None, None
        self._in_worker.clear()
        if channel is not None:
            channel.close()
        if proc is None:
            return "was not running"
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        code = proc.exitcode
        if code is not None and code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        return f"exited with status {code}"
