"""A compiled rule file (``RuleSet``) as a durable-rules 2.0.28 ruleset, and the messages that
carry a ticket's facts to it, such that the engine's answer is exactly the reference
evaluator's (``fieldloop.rules.evaluate.matching``).

Only the engine's safe subset is used: one single-pattern rule (``{"all": [{"m": ...}]}``) per
rule of ours, ordered by ``pri`` (the rule's position in the file); no joins, timers, count/cap
or per-entity state. How each of our tests is written for the engine:

* negation is pushed to the leaves (NNF). durable-rules, like us, fails every test on a missing
  property except ``$nex``, so ``not (f eq v)`` becomes ``$nex f or f $neq v``, and so on;
* ``in`` is an ``$or`` of ``$eq``, ``not_in`` an ``$and`` of ``$neq``, ``between`` an ``$and``
  of ``$gte`` and ``$lte``; ``contains_any`` on a list field is ``$iany`` (``$iall`` of ``$neq``
  under ``not``);
* ``contains_any`` on text and ``matches`` are *atoms*: evaluated in Python before posting and
  carried in the message as booleans (``_a<n>: true``). durable's regular expressions cannot
  say them: its ``$mt`` DFA gives wrong answers for plain substring search (``.*aba.*`` misses
  "abab", ``.*(ab|ba).*`` misses "abb", ``.*水漏水.*`` misses "水漏水漏"), and it matches the
  raw JSON text, escapes included (``.*nt.*`` matches "x\\ntap").

The engine's own limits (``src/rules/*.h``) are respected at compile time: a rule with too many
``$and``/``$or`` is split into several durable rules with the same id and pri, and the rules are
spread over *chunks* (separate sub-networks of the one ruleset, selected by ``_c`` in the
message) so that no node of the network has too many children, too many rules, or too many
children matching one message at once (its evaluation stack holds 64). A ticket is posted once
per chunk, in order (first-hit stops at the first chunk that fires)."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from fieldloop.rules.conditions import All, Always, AnyOf, Node, Not, Test
from fieldloop.rules.fields import FIELDS, Field, FieldType
from fieldloop.rules.files import RuleSet

Pattern = dict[str, Any]

#: a field's property in the engine's messages ("asset.class" -> "f_asset_class"): no dots,
#: which durable reads as paths, and no clash with its own names (id, sid, $s)
FIELD_KEYS: dict[str, str] = {name: "f_" + name.replace(".", "_") for name in FIELDS}
FIELD_OF_KEY: dict[str, str] = {key: name for name, key in FIELD_KEYS.items()}
assert len(FIELD_OF_KEY) == len(FIELD_KEYS)
CHUNK_KEY = "_c"  # the chunk a message is for; also keeps rules off durable's state object
ATOM_PREFIX = "_a"
SID = "0"  # one lane: every message goes to the same state, so the 1,024-state cap never bites

# durable-rules 2.0.28's fixed sizes (src/rules/rete.h, state.h, events.c) and our margins
MAX_GROUPS = 15  # MAX_SEQUENCE_EXPRESSIONS 32, and each $and/$or of a rule takes two
MAX_HASHED_CHILDREN = 400  # NEXT_BUCKET_LENGTH 512: a full table makes creation loop forever
MAX_LISTED_CHILDREN = 100  # NEXT_LIST_LENGTH 128: $nex tests and $or joins under one node
MAX_BETAS = 200  # BETA_LIST_LENGTH 256: rules ending on the same node
MAX_STACK = 56  # MAX_STACK_SIZE 64: nodes matched and pending at once during one post
MAX_ATOMS = 200  # MAX_OBJECT_PROPERTIES 255 per message, fields, id, sid and _c included
MAX_STRING_BYTES = 65_000  # string lengths are unsigned short where durable compares them
MAX_ITEMS = 300  # words in one $iany / $iall
MAX_PIECES = 64  # durable rules one of ours may become
MAX_CHUNKS = 400  # chunk guards are children of the network's root
MAX_EXACT_INT = 2**53  # durable compares int with double as doubles


class CompileError(ValueError):
    """The rule file cannot be evaluated by durable-rules exactly (the reason is in the text)."""


@dataclass(frozen=True)
class Piece:
    """One durable rule: all or part (a branch of a top-level ``any``) of one of ours."""

    name: str  # the durable rule's name
    rule_id: str
    pri: int
    chunk: int
    pattern: Pattern  # the chunk guard first


@dataclass(frozen=True)
class Chunk:
    index: int
    atoms: tuple[int, ...]  # the atoms its rules read (each message carries only these)


@dataclass(frozen=True)
class CompiledRuleset:
    name: str  # the durable ruleset's name: c_<kind>_<version[:12]>
    kind: str
    mode: str  # first_hit (events, consumed by the first rule by pri) | collect (facts)
    version: str
    rule_ids: tuple[str, ...]  # every rule of the file, in file order
    pieces: tuple[Piece, ...]
    chunks: tuple[Chunk, ...]
    atoms: tuple[Test, ...]  # evaluated in Python; message property _a<index>
    fields: tuple[str, ...]  # the fields the engine itself tests (the rest never travel)

    @cached_property
    def definition(self) -> dict[str, Any]:
        """The ruleset as durable-rules takes it (without the ``run`` actions)."""
        return {p.name: {"all": [{"m": p.pattern}], "pri": p.pri} for p in self.pieces}

    def to_json(self) -> str:
        return dumps(self.definition)

    @cached_property
    def rule_of_piece(self) -> dict[str, str]:
        return {p.name: p.rule_id for p in self.pieces}

    @cached_property
    def position(self) -> dict[str, int]:
        return {rid: i for i, rid in enumerate(self.rule_ids)}


def ruleset_name(ruleset: RuleSet) -> str:
    return f"c_{ruleset.kind.removesuffix('Rules').lower()}_{ruleset.version[:12]}"


# --- compiling ------------------------------------------------------------------------------


def compile_ruleset(ruleset: RuleSet) -> CompiledRuleset:
    """The durable-rules form of ``ruleset``, or CompileError naming the rule that cannot be
    evaluated exactly within the engine's limits."""
    atoms = _Atoms()
    units: list[tuple[str, int, Pattern | bool]] = []
    for rule in ruleset.rules:
        try:
            body = _nnf(rule.condition, False, atoms)
        except CompileError as exc:
            raise CompileError(f"rule {rule.id!r}: {exc}") from None
        if body is False:
            continue  # can never match: nothing to tell the engine
        try:
            units.extend((rule.id, rule.pri, b) for b in _pieces(body))
        except CompileError as exc:
            raise CompileError(f"rule {rule.id!r}: {exc}") from None
    chunks = _chunk(units)
    pieces: list[Piece] = []
    chunk_atoms: list[tuple[int, ...]] = []
    for c, members in enumerate(chunks):
        used: set[int] = set()
        for n, (rid, pri, body) in enumerate(members):
            pattern = _guarded(body, c)
            used |= _atoms_in(pattern)
            pieces.append(Piece(f"c{c}_{n}", rid, pri, c, pattern))
        chunk_atoms.append(tuple(sorted(used)))
    fields = sorted(
        {FIELD_OF_KEY[k] for p in pieces for k in _props(p.pattern) if k in FIELD_OF_KEY}
    )
    return CompiledRuleset(
        name=ruleset_name(ruleset),
        kind=ruleset.kind,
        mode=ruleset.mode,
        version=ruleset.version,
        rule_ids=tuple(r.id for r in ruleset.rules),
        pieces=tuple(pieces),
        chunks=tuple(Chunk(i, a) for i, a in enumerate(chunk_atoms)),
        atoms=tuple(atoms.tests),
        fields=tuple(fields),
    )


class _Atoms:
    def __init__(self) -> None:
        self.tests: list[Test] = []
        self._index: dict[tuple[str, str, Any], int] = {}

    def key(self, t: Test) -> str:
        k = (t.field, t.op, t.value)
        i = self._index.get(k)
        if i is None:
            i = self._index[k] = len(self.tests)
            self.tests.append(t)
        return f"{ATOM_PREFIX}{i}"


def _nnf(node: Node, neg: bool, atoms: _Atoms) -> Pattern | bool:
    """``node`` (negated when ``neg``) with negation pushed to the tests; True/False when it
    always/never holds."""
    if isinstance(node, Test):
        return _test(node, neg, atoms)
    if isinstance(node, Not):
        return _nnf(node.child, not neg, atoms)
    if isinstance(node, All | AnyOf):
        parts = [_nnf(c, neg, atoms) for c in node.children]
        conjunctive = isinstance(node, All) != neg  # De Morgan
        return _and(parts) if conjunctive else _or(parts)
    assert isinstance(node, Always)
    return not neg


def _test(t: Test, neg: bool, atoms: _Atoms) -> Pattern | bool:
    field = FIELDS[t.field]
    k = FIELD_KEYS[t.field]
    missing: Pattern = {"$nex": {k: 1}}
    op, v = t.op, t.value
    if op == "exists":
        return {"$ex" if v != neg else "$nex": {k: 1}}
    if op == "matches" or (op == "contains_any" and field.type is not FieldType.keywords):
        # durable's regular expressions cannot say these (see the module's doc): the atom is
        # the reference's own answer, missing field included, so `not` is just `false`
        return {atoms.key(t): not neg}
    if op == "contains_any":  # a list field: membership
        words = [_operand(field, w) for w in dict.fromkeys(v)]
        groups = [words[i : i + MAX_ITEMS] for i in range(0, len(words), MAX_ITEMS)]
        if not neg:
            return _or([{"$iany": {k: _or([{"$i": w} for w in g])}} for g in groups])
        # $iall is false on an empty list: messages end every list with "" (no word is empty)
        alls = [{"$iall": {k: _and([{"$neq": {"$i": w}} for w in g])}} for g in groups]
        return _or([missing, _and(alls)])
    if op in ("in", "not_in"):
        values = [_operand(field, x) for x in dict.fromkeys(v)]
        anyof = _or([{k: x} for x in values])
        noneof = _and([{"$neq": {k: x}} for x in values])
        if not neg:
            return anyof if op == "in" else noneof
        return _or([missing, noneof if op == "in" else anyof])
    if op == "between":
        lo, hi = (_operand(field, x) for x in v)
        if not neg:
            return _and([{"$gte": {k: lo}}, {"$lte": {k: hi}}])
        return _or([missing, {"$lt": {k: lo}}, {"$gt": {k: hi}}])
    x = _operand(field, v)
    positive = {"eq": (k, x), "ne": ("$neq", {k: x})}
    if op in positive and not neg:
        key, arg = positive[op]
        return {key: arg}
    if op in positive:
        return _or([missing, {"$neq": {k: x}} if op == "eq" else {k: x}])
    compare = {"gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte"}
    flipped = {"gt": "$lte", "gte": "$lt", "lt": "$gte", "lte": "$gt"}
    if not neg:
        return {compare[op]: {k: x}}
    return _or([missing, {flipped[op]: {k: x}}])


def _operand(field: Field, value: Any) -> Any:
    """A rule's operand as durable can compare it exactly."""
    if isinstance(value, str):
        if _string_bytes(value) > MAX_STRING_BYTES:
            raise CompileError(f"a {field.name} operand is over {MAX_STRING_BYTES:,} bytes")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise CompileError(f"a {field.name} operand is not valid UTF-8") from None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_EXACT_INT:
        raise CompileError(f"{value} is beyond ±2**53, where doubles stop being exact")
    return value


def _and(parts: list[Pattern | bool]) -> Pattern | bool:
    if any(p is False for p in parts):
        return False
    flat = _flatten("$and", [p for p in parts if p is not True])
    return True if not flat else flat[0] if len(flat) == 1 else {"$and": flat}


def _or(parts: list[Pattern | bool]) -> Pattern | bool:
    if any(p is True for p in parts):
        return True
    flat = _flatten("$or", [p for p in parts if p is not False])
    return False if not flat else flat[0] if len(flat) == 1 else {"$or": flat}


def _flatten(op: str, parts: list[Any]) -> list[Pattern]:
    out: dict[str, Pattern] = {}  # by JSON text: the same test twice is one test
    for p in parts:
        for q in p.get(op, [p]):
            out.setdefault(dumps(q), q)
    return list(out.values())


def _guarded(body: Pattern | bool, chunk: int) -> Pattern:
    # the guard comes first, so every rule of a chunk hangs under one node
    guard: Pattern = {CHUNK_KEY: chunk}
    return guard if body is True else _and([guard, body])  # type: ignore[return-value]


def _groups(p: Any) -> int:
    """How many $and / $or durable counts for this pattern (MAX_GROUPS)."""
    if isinstance(p, dict):
        own = 1 if ("$and" in p or "$or" in p) else 0
        return own + sum(_groups(v) for v in p.values())
    if isinstance(p, list):
        return sum(_groups(v) for v in p)
    return 0


def _pieces(body: Pattern | bool) -> list[Pattern | bool]:
    """``body`` as one or more durable rules, each within the engine's limits on its own."""
    todo, out = [body], []
    while todo:
        b = todo.pop(0)
        if _fits_alone(b):
            out.append(b)
        else:
            parts = _split(b)
            if parts is None:
                raise CompileError(
                    "the condition is too complex for durable-rules (over "
                    f"{MAX_GROUPS} all/any groups or too many tests at one level); split the rule"
                )
            todo[:0] = parts
        if len(out) + len(todo) > MAX_PIECES:
            raise CompileError(f"the condition needs over {MAX_PIECES} durable rules; split it")
    return out


def _fits_alone(body: Pattern | bool) -> bool:
    pattern = _guarded(body, 0)
    if _groups(pattern) > MAX_GROUPS:
        return False
    model = _Network()
    model.add(pattern)
    return model.within_limits() and len(_atoms_in(pattern)) <= MAX_ATOMS


def _split(body: Pattern | bool) -> list[Pattern | bool] | None:
    """``body`` as alternatives (an ``any`` at the top, or one distributed over an ``all``)."""
    if not isinstance(body, dict):
        return None
    if "$or" in body:
        return list(body["$or"])
    if "$and" in body:
        parts = body["$and"]
        ors = [i for i, p in enumerate(parts) if "$or" in p]
        if not ors:
            return None
        i = min(ors, key=lambda j: len(parts[j]["$or"]))
        return [_and([*parts[:i], b, *parts[i + 1 :]]) for b in parts[i]["$or"]]
    return None


def _chunk(units: list[tuple[str, int, Pattern | bool]]) -> list[list[Any]]:
    """The durable rules in pri order, cut into consecutive chunks that each stay within the
    engine's limits (a cut between two pieces of one rule keeps first-hit order)."""
    chunks: list[list[Any]] = []
    current: list[Any] = []
    model, atoms = _Network(), set[int]()
    for unit in units:
        pattern = _guarded(unit[2], len(chunks))
        model.add(pattern)
        atoms |= _atoms_in(pattern)
        if current and (not model.within_limits() or len(atoms) > MAX_ATOMS):
            chunks.append(current)
            current, model = [], _Network()
            pattern = _guarded(unit[2], len(chunks))
            model.add(pattern)
            atoms = _atoms_in(pattern)
        current.append(unit)
    if current:
        chunks.append(current)
    if len(chunks) > MAX_CHUNKS:
        raise CompileError(f"the file needs over {MAX_CHUNKS} chunks of rules; split it")
    return chunks


def _atoms_in(p: Any) -> set[int]:
    return {int(k[len(ATOM_PREFIX) :]) for k in _props(p) if k.startswith(ATOM_PREFIX)}


def _props(p: Any) -> set[str]:
    """The message properties a pattern tests."""
    out: set[str] = set()
    if isinstance(p, list):
        for q in p:
            out |= _props(q)
    elif isinstance(p, dict):
        for key, value in p.items():
            if key in ("$and", "$or"):
                out |= _props(value)
            elif key.startswith("$"):
                out |= {k for k in value if not k.startswith("$")}
            else:
                out.add(key)
    return out


# --- a model of durable's alpha network -----------------------------------------------------


class _Node:
    """A node of durable's alpha network as ``rete.c`` builds it: hashed children (tests on a
    property, shared between rules when equal), listed children ($nex tests and the join node
    of an $or), and the rules (betas) that end here."""

    __slots__ = ("betas", "hashed", "listed")

    def __init__(self) -> None:
        self.hashed: dict[tuple[Any, ...], _Node] = {}
        self.listed: dict[tuple[Any, ...], _Node] = {}
        self.betas = 0


class _Network:
    def __init__(self) -> None:
        self.root = _Node()
        self.items_ok = True

    def add(self, pattern: Pattern) -> None:
        self._build(pattern, self.root).betas += 1

    def _build(self, p: Pattern, parent: _Node) -> _Node:
        if "$and" in p:
            node = parent
            for c in p["$and"]:
                node = self._build(c, node)
            return node
        if "$or" in p:
            join = _Node()  # createForwardAlpha: never shared
            for c in p["$or"]:
                self._build(c, parent).listed[("$or", id(join))] = join
            return join
        ((op, arg),) = p.items()
        if op == "$nex":
            return parent.listed.setdefault(("$nex", *arg), _Node())
        if op in ("$iany", "$iall"):
            node = _Node()  # findAlpha never shares these
            parent.hashed[(*arg, op, id(node))] = node
            ((_, inner),) = arg.items()
            self.items_ok &= _items(inner) <= MAX_ITEMS
            return node
        if op.startswith("$"):
            ((prop, value),) = arg.items()
        else:
            op, prop, value = "$eq", op, arg
        return parent.hashed.setdefault((prop, op, type(value).__name__, value), _Node())

    def within_limits(self) -> bool:
        if not self.items_ok:
            return False
        nodes = _reachable(self.root)
        for n in nodes:
            if (
                len(n.hashed) > MAX_HASHED_CHILDREN
                or len(n.listed) > MAX_LISTED_CHILDREN
                or n.betas > MAX_BETAS
            ):
                return False
        return _stack_depth(nodes) <= MAX_STACK


def _items(inner: Pattern) -> int:
    for op in ("$or", "$and"):
        if op in inner:
            return len(inner[op])
    return 1


def _reachable(root: _Node) -> list[_Node]:
    """Every node once, children after their parents."""
    seen: dict[int, _Node] = {}
    order: list[_Node] = []
    todo = [root]
    while todo:
        n = todo.pop()
        if id(n) in seen:
            continue
        seen[id(n)] = n
        order.append(n)
        todo.extend(n.hashed.values())
        todo.extend(n.listed.values())
    return order


def _stack_depth(nodes: list[_Node]) -> int:
    """The most entries durable's evaluation stack (``handleAlpha``) can hold for any message.

    Popping a node pushes every child that matches; the deepest subtree may be walked while its
    k-1 siblings wait: depth(n) = max(k, k - 1 + max depth(child)). k counts every listed
    child and every hashed one, except that ``$eq`` tests of one property on different values
    cannot match together."""
    depth: dict[int, int] = {}
    changed = True
    while changed:  # a fixpoint over the DAG ($or joins have several parents)
        changed = False
        for n in reversed(nodes):
            kids = [*n.hashed.values(), *n.listed.values()]
            if not kids:
                d = 0
            else:
                k = _matchable_at_once(n)
                d = max(k, k - 1 + max(depth.get(id(c), 0) for c in kids))
            if depth.get(id(n)) != d:
                depth[id(n)] = d
                changed = True
    return depth[id(nodes[0])]


def _matchable_at_once(n: _Node) -> int:
    eqs: dict[str, Counter[Any]] = {}
    others: Counter[str] = Counter()
    for key in n.hashed:
        prop, op = key[0], key[1]
        if op == "$eq":
            value = key[3]
            same = float(value) if isinstance(value, int | float) and key[2] != "bool" else key
            eqs.setdefault(prop, Counter())[same] += 1
        else:
            others[prop] += 1
    props = set(eqs) | set(others)
    return len(n.listed) + sum(
        max(eqs.get(p, Counter()).values(), default=0) + others[p] for p in props
    )


# --- messages -------------------------------------------------------------------------------


def encode_facts(compiled: CompiledRuleset, facts: Mapping[str, Any]) -> dict[str, Any]:
    """The properties every message of ``compiled`` carries for ``facts`` (as
    ``normalise_facts`` makes them): the fields the engine tests, typed per the registry.
    ValueError for a value the engine could not compare exactly."""
    out: dict[str, Any] = {}
    for name in compiled.fields:
        value = facts.get(name)
        if value is not None:
            out[FIELD_KEYS[name]] = _encode(FIELDS[name], value)
    return out


def _encode(field: Field, value: Any) -> Any:
    t = field.type
    if t in (FieldType.text, FieldType.keyword):
        if not isinstance(value, str):
            raise ValueError(f"facts: {field.name} takes text, not {type(value).__name__}")
        return _comparable(value)
    if t is FieldType.keywords:
        if isinstance(value, str) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"facts: {field.name} takes a list of text")
        # the trailing "" keeps $iall true on an empty list; no word (nor operand) is empty
        return [*(_comparable(v) for v in value), ""]
    if t is FieldType.boolean:
        if not isinstance(value, bool):
            raise ValueError(f"facts: {field.name} takes true or false, not {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"facts: {field.name} takes a number, not {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"facts: {field.name} is {value!r}, not a finite number")
    if isinstance(value, int) and abs(value) > MAX_EXACT_INT:
        raise ValueError(f"facts: {field.name} = {value} is beyond ±2**53")
    return value


def _comparable(s: str) -> str:
    # Only eq/ne/in/not_in reach the engine with a string, against operands that are never
    # empty and always valid UTF-8: "" answers them all as the value would where durable
    # cannot hold the value itself (lengths are 16 bits where it compares; the binding
    # encodes to UTF-8, which a lone surrogate is not).
    if len(s) * 6 > MAX_STRING_BYTES and _string_bytes(s) > MAX_STRING_BYTES:
        return ""
    if not s.isascii():
        try:
            s.encode()
        except UnicodeEncodeError:
            return ""
    return s


def _string_bytes(s: str) -> int:
    return len(json.dumps(s, ensure_ascii=False).encode()) - 2


def chunk_message(
    compiled: CompiledRuleset, chunk: Chunk, base: Mapping[str, Any], atom: Callable[[int], bool]
) -> dict[str, Any]:
    """The message for one chunk: ``base`` (``encode_facts``), the chunk's atoms (``atom(i)``
    answers atom i, e.g. ``lambda i: holds(compiled.atoms[i], facts)``) and its guard."""
    msg = dict(base)
    for i in chunk.atoms:
        msg[f"{ATOM_PREFIX}{i}"] = atom(i)
    msg[CHUNK_KEY] = chunk.index
    return msg


# --- JSON as durable parses it --------------------------------------------------------------


def dumps(obj: Any) -> str:
    """JSON that durable's parser reads: it rejects an exponent without a fraction (``1e-07``),
    which is how Python writes small and large floats."""
    if isinstance(obj, dict) and all(_plain(v) for v in obj.values()):
        # the common, flat message: the C encoder
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return _dumps(obj)


def _plain(v: Any) -> bool:
    """Whether json.dumps writes ``v`` as durable reads it (a message's values: text, ints,
    bools, lists of text, floats)."""
    t = type(v)
    if t is str or t is int or t is bool:
        return True
    if t is float:
        return math.isfinite(v) and "e" not in repr(v)
    return t is list and all(type(x) is str for x in v)


def _dumps(obj: Any) -> str:
    if isinstance(obj, str):
        return json.dumps(obj, ensure_ascii=False)
    if obj is True or obj is False or obj is None:
        return json.dumps(obj)
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, float):
        return _float(obj)
    if isinstance(obj, Mapping):
        return "{" + ",".join(f"{_dumps(str(k))}:{_dumps(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ",".join(_dumps(v) for v in obj) + "]"
    raise TypeError(f"cannot write {type(obj).__name__} for durable-rules")


def _float(x: float) -> str:
    if not math.isfinite(x):
        raise ValueError(f"{x!r} is not a finite number")
    text = repr(x)
    mantissa, e, exponent = text.partition("e")
    if e and "." not in mantissa:
        return f"{mantissa}.0e{exponent}"
    return text
