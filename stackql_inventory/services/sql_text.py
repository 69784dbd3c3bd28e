"""Pure text functions over StackQL: comments, statements, the cursor's statement, completion context, names."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN_RE = re.compile(
    r"""
     (?P<ws>\s+)
    |(?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
    |(?P<string>'(?:[^']|'')*'?)
    |(?P<dquote>"(?:[^"]|"")*"?)
    |(?P<bquote>`(?:[^`]|``)*`?)
    |(?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
    |(?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    |(?P<op><>|!=|<=|>=|==|\|\||::|->>|->|.)
    """,
    re.S | re.X,
)

_CLOSERS = {"string": "'", "dquote": '"', "bquote": "`"}

# Keywords after which a provider.service.resource name is expected.
_TABLE_KEYWORDS = {"FROM", "JOIN", "INTO", "UPDATE", "DESCRIBE", "DESC", "EXEC"}
# Keywords that start a clause (they end a FROM list or a select list).
_CLAUSE_KEYWORDS = {
    "SELECT", "FROM", "WHERE", "GROUP", "ORDER", "HAVING", "LIMIT", "OFFSET", "ON", "USING", "JOIN",
    "UNION", "INTERSECT", "EXCEPT", "SET", "VALUES", "INTO", "WINDOW", "RETURNING",
}
_NOT_ALIAS = _CLAUSE_KEYWORDS | {
    "AS", "INNER", "LEFT", "RIGHT", "FULL", "OUTER", "CROSS", "NATURAL", "AND", "OR", "NOT", "LIKE",
    "IN", "IS", "NULL", "CASE", "WHEN", "THEN", "ELSE", "END", "DISTINCT", "ALL", "BY", "LATERAL",
}
# A comma at the top of these clauses starts another FROM item (`FROM a JOIN b ON … , c`).
_FROM_LIST_CLAUSES = {"FROM", "JOIN", "ON", "USING"}
# Tokens after which a column name is expected.
_COLUMN_AFTER = {
    "SELECT", "WHERE", "AND", "OR", "ON", "BY", "HAVING", "NOT", "DISTINCT", "CASE", "WHEN", "THEN",
    "ELSE", "SET", "IS", "LIKE", "BETWEEN", "(", ",", "=", "==", "<>", "!=", "<", ">", "<=", ">=", "+", "-",
    "*", "/", "%", "||",
}


@dataclass(frozen=True)
class Token:
    """One lexical token; `value` is the unquoted text of strings and quoted identifiers."""

    kind: str  # ws | comment | string | dquote | bquote | number | word | op
    text: str
    start: int
    value: str

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    @property
    def keyword(self) -> str:
        """Upper-cased text of a bare word ('' otherwise)."""
        return self.text.upper() if self.kind == "word" else ""

    @property
    def is_ident(self) -> bool:
        return self.kind in ("word", "dquote", "bquote")

    @property
    def unterminated(self) -> bool:
        closer = _CLOSERS.get(self.kind)
        if closer:
            return len(self.text) < 2 or not self.text.endswith(closer)
        return self.kind == "comment" and self.text.startswith("/*") and not self.text.endswith("*/")

    @property
    def significant(self) -> bool:
        return self.kind not in ("ws", "comment")


def tokenize(text: str) -> list[Token]:
    """Split `text` into tokens, respecting quotes and comments (unterminated ones run to the end)."""
    tokens = []
    for m in _TOKEN_RE.finditer(text):
        kind, raw = m.lastgroup or "op", m.group()
        value = raw
        closer = _CLOSERS.get(kind)
        if closer:
            inner = raw[1:-1] if len(raw) > 1 and raw.endswith(closer) else raw[1:]
            value = inner.replace(closer * 2, closer)
        tokens.append(Token(kind, raw, m.start(), value))
    return tokens


def strip_comments(text: str) -> str:
    """`text` without `--` and `/* */` comments (quoted text untouched; a block comment becomes a space)."""
    return "".join(
        (" " if t.text.startswith("/*") else "") if t.kind == "comment" else t.text for t in tokenize(text)
    )


# ------------------------------------------------------------------------------------------ statements


@dataclass(frozen=True)
class Statement:
    """One statement: its text (trimmed, without the `;`) and where that text sits in the input."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class _Segment:
    start: int  # first character after the previous `;`
    end: int  # index of this segment's `;` (or len(text))
    tokens: tuple[Token, ...] = field(default=())

    @property
    def blank(self) -> bool:
        return not any(t.significant for t in self.tokens)


def _segments(text: str) -> list[_Segment]:
    segments, current, start = [], [], 0
    for tok in tokenize(text):
        if tok.kind == "op" and tok.text == ";":
            segments.append(_Segment(start, tok.start, tuple(current)))
            current, start = [], tok.end
        else:
            current.append(tok)
    segments.append(_Segment(start, len(text), tuple(current)))
    return segments


def _statement(text: str, seg: _Segment) -> Statement:
    raw = text[seg.start:seg.end]
    lead = len(raw) - len(raw.lstrip())
    body = raw.strip()
    return Statement(body, seg.start + lead, seg.start + lead + len(body))


def statements(text: str) -> list[Statement]:
    """The statements of `text` split on `;` outside quotes and comments; blank ones are dropped."""
    return [_statement(text, seg) for seg in _segments(text) if not seg.blank]


def split_statements(text: str) -> list[str]:
    """The texts of the statements in `text` (comments kept, trailing `;` dropped)."""
    return [s.text for s in statements(text)]


def statement_at(text: str, cursor_offset: int) -> str:
    """The statement under the cursor (Ctrl+Enter); '' when the text holds none.

    A cursor just after a `;` on the same line, or on a blank line between statements, belongs to
    the statement before it (at the top of the editor, to the one after it).
    """
    segments = _segments(text)
    offset = max(0, min(cursor_offset, len(text)))
    idx = next(i for i, seg in enumerate(segments) if seg.start <= offset <= seg.end or i == len(segments) - 1)
    seg = segments[idx]
    first_sig = next((t.start for t in seg.tokens if t.significant), None)
    in_gap = first_sig is not None and offset < first_sig and (
        "\n" not in text[seg.start:offset] or "\n" in text[offset:first_sig])
    if (in_gap or (first_sig is None and "\n" not in text[seg.start:offset])) and idx > 0:
        prev = next((s for s in reversed(segments[:idx]) if not s.blank), None)
        if prev is not None:
            return _statement(text, prev).text
    if seg.blank:
        prev = next((s for s in reversed(segments[:idx]) if not s.blank), None)
        nxt = next((s for s in segments[idx + 1:] if not s.blank), None)
        chosen = prev or nxt
        return _statement(text, chosen).text if chosen else ""
    return _statement(text, seg).text


def leading_keyword(statement: str) -> str:
    """The first keyword of a statement, upper-cased ('' if none)."""
    tok = next((t for t in tokenize(statement) if t.significant), None)
    return tok.keyword if tok else ""


# ------------------------------------------------------------------------------------------ names


def _table_refs(tokens: list[Token]) -> list[tuple[str, str | None, int]]:
    """(fqn, alias, index of the chain's first significant token) for each p.s.r in table position."""
    sig = [t for t in tokens if t.significant]
    refs = []
    clause_stack = [""]
    i = 0
    while i < len(sig):
        tok = sig[i]
        if tok.text == "(":
            clause_stack.append("")
        elif tok.text == ")":
            if len(clause_stack) > 1:
                clause_stack.pop()
        elif tok.keyword in _CLAUSE_KEYWORDS:
            clause_stack[-1] = tok.keyword
        if tok.is_ident:
            parts, j = [tok.value], i + 1
            while j + 1 < len(sig) and sig[j].text == "." and sig[j + 1].is_ident and sig[j].start == sig[j - 1].end:
                parts.append(sig[j + 1].value)
                j += 2
            prev = sig[i - 1] if i > 0 else None
            prev_kw = prev.keyword or prev.text if prev else ""
            in_table_position = prev_kw in _TABLE_KEYWORDS or prev_kw == "EXTENDED" or (
                prev_kw == "IN" and i >= 2 and sig[i - 2].keyword == "METHODS"
            ) or (prev_kw == "," and clause_stack[-1] in _FROM_LIST_CLAUSES)
            if in_table_position and (len(parts) == 3 or (len(parts) > 3 and prev_kw == "EXEC")):
                alias = None
                k = j
                if k < len(sig) and sig[k].keyword == "AS":
                    k += 1
                if k < len(sig) and sig[k].is_ident and sig[k].keyword not in _NOT_ALIAS:
                    alias = sig[k].value
                refs.append((".".join(parts[:3]), alias, i))
            if len(parts) > 1:
                i = j
                continue
        i += 1
    return refs


def referenced_resources(text: str) -> list[str]:
    """The `provider.service.resource` names used as tables in `text`, first use first, no repeats."""
    return list(dict.fromkeys(fqn for fqn, _alias, _i in _table_refs(tokenize(text))))


def resource_aliases(statement: str) -> dict[str, str]:
    """Alias (and bare resource name) -> fqn for the resources of one statement."""
    aliases: dict[str, str] = {}
    for fqn, alias, _i in _table_refs(tokenize(statement)):
        aliases.setdefault(fqn.rsplit(".", 1)[1], fqn)
        if alias:
            aliases[alias] = fqn
    return aliases


# ------------------------------------------------------------------------------------------ completion


@dataclass(frozen=True)
class CompletionContext:
    """What the editor should offer at the cursor.

    kind: "provider" | "service" | "resource" (a table name is being typed), "column" (a column of
    `resources`, narrowed by `qualifier` when an alias was typed), "keyword", or "none" (inside a
    string or comment). `partial` is the part of the name already typed.
    """

    kind: str
    partial: str = ""
    provider: str = ""
    service: str = ""
    qualifier: str = ""
    resources: tuple[str, ...] = ()


def completion_context(text: str, cursor_offset: int) -> CompletionContext:
    """Classify the cursor position for autocompletion (after FROM/JOIN/DESCRIBE, in a select list…)."""
    offset = max(0, min(cursor_offset, len(text)))
    for tok in tokenize(text):
        # Inside a string literal or a comment (a line comment runs to its end of line): nothing to offer.
        if tok.kind in ("string", "comment") and tok.start < offset and (
            offset < tok.end or (offset == tok.end and (tok.unterminated or tok.text.startswith("--")))
        ):
            return CompletionContext("none")
    seg = next((s for s in _segments(text) if s.start <= offset <= s.end), None)
    if seg is None:
        return CompletionContext("none")
    tokens = [t for t in seg.tokens if t.end <= offset and t.significant]
    # The dotted name being typed, e.g. `aws.ec2.in` -> ["aws", "ec2", "in"].
    parts: list[str] = []
    k = len(tokens) - 1
    if k >= 0 and tokens[k].is_ident and tokens[k].end == offset and not tokens[k].unterminated:
        parts.append(tokens[k].value)
        k -= 1
    else:
        parts.append("")
    while (k >= 1 and tokens[k].text == "." and tokens[k - 1].is_ident and tokens[k - 1].end == tokens[k].start
           and tokens[k].end == (tokens[k + 1].start if k + 1 < len(tokens) else offset)):
        parts.insert(0, tokens[k - 1].value)
        k -= 2
    prev = tokens[k] if k >= 0 else None
    prev_kw = (prev.keyword or prev.text) if prev else ""
    statement_tokens = list(seg.tokens)
    head = [t.keyword for t in tokens[: k + 1] if t.kind == "word"]
    clause = _clause_before(tokens[: k + 1])

    meta = head[:3]
    if prev_kw == "IN" and len(meta) >= 2 and meta[0] == "SHOW":
        noun = meta[-1] if meta[-1] != "EXTENDED" else ""
        noun = next((w for w in head[1:] if w in ("SERVICES", "RESOURCES", "METHODS")), noun)
        max_level = {"SERVICES": 1, "RESOURCES": 2, "METHODS": 3}.get(noun, 0)
        return _name_context(parts, max_level)
    if prev_kw in _TABLE_KEYWORDS or (prev_kw == "EXTENDED" and head[:1] in (["DESCRIBE"], ["DESC"])) or (
        prev_kw == "," and clause in _FROM_LIST_CLAUSES
    ):
        return _name_context(parts, 3)
    if prev is None and len(parts) == 1:
        return CompletionContext("keyword", partial=parts[0])
    if len(parts) >= 2 or prev_kw in _COLUMN_AFTER or clause in ("SELECT", "WHERE", "ON", "GROUP", "ORDER", "HAVING"):
        resources = tuple(referenced_resources("".join(t.text for t in statement_tokens)))
        qualifier = parts[-2] if len(parts) >= 2 else ""
        if qualifier:
            aliases = resource_aliases("".join(t.text for t in statement_tokens))
            target = aliases.get(qualifier) or (".".join(parts[:-1]) if ".".join(parts[:-1]) in resources else "")
            resources = (target,) if target else ()
        return CompletionContext("column", partial=parts[-1], qualifier=qualifier, resources=resources)
    return CompletionContext("keyword", partial=parts[-1])


def _clause_before(tokens: list[Token]) -> str:
    depth, clauses = 0, {0: ""}
    for tok in tokens:
        if tok.text == "(":
            depth += 1
            clauses[depth] = ""
        elif tok.text == ")":
            depth = max(0, depth - 1)
        elif tok.keyword in _CLAUSE_KEYWORDS or tok.keyword == "BY":
            clauses[depth] = tok.keyword if tok.keyword != "BY" else clauses[depth]
    return clauses.get(depth, "")


def _name_context(parts: list[str], max_level: int) -> CompletionContext:
    level = len(parts)
    if level > max_level or level > 3:
        return CompletionContext("none")
    if level == 1:
        return CompletionContext("provider", partial=parts[0])
    if level == 2:
        return CompletionContext("service", partial=parts[1], provider=parts[0])
    return CompletionContext("resource", partial=parts[2], provider=parts[0], service=parts[1])


# ------------------------------------------------------------------------------------------ result shape


@dataclass(frozen=True)
class SelectItem:
    """One item of a select list.

    `name` is its output name when the text tells (alias or column name); `text` its source text
    (SQLite names an unaliased expression by it); `star` the resources a `*` / `t.*` expands to.
    """

    name: str | None
    text: str
    star: tuple[str, ...] | None = None


def _select_list_texts(statement: str) -> list[str] | None:
    """Source texts of the top-level select list (the main SELECT, after any WITH)."""
    sig = [t for t in tokenize(statement) if t.significant]
    depth, start = 0, None
    for i, tok in enumerate(sig):
        if tok.text == "(":
            depth += 1
        elif tok.text == ")":
            depth -= 1
        elif depth == 0 and tok.keyword == "SELECT":
            start = i + 1
            break
    if start is None:
        return None
    while start < len(sig) and sig[start].keyword in ("DISTINCT", "ALL"):
        start += 1
    items, begin, depth = [], start, 0
    for i in range(start, len(sig) + 1):
        tok = sig[i] if i < len(sig) else None
        if tok is not None and tok.text == "(":
            depth += 1
        elif tok is not None and tok.text == ")":
            depth -= 1
        end_of_list = tok is None or (depth == 0 and tok.keyword in _CLAUSE_KEYWORDS - {"SELECT"})
        if end_of_list or (depth == 0 and tok.text == ","):
            if begin < i:
                items.append(statement[sig[begin].start:sig[i - 1].end])
            begin = i + 1
            if end_of_list:
                break
    return items


def select_items(statement: str) -> list[SelectItem] | None:
    """The output columns a SELECT promises, in order; None for other statements or unparsable text.

    Uses sqlglot for aliases, column names and stars; `text` comes from the source itself.
    """
    if leading_keyword(statement) not in ("SELECT", "WITH") and not statement.lstrip().startswith("("):
        return None
    texts = _select_list_texts(statement)
    if not texts:
        return None
    tables = [fqn for fqn, _a, _i in _table_refs(tokenize(statement))]
    aliases = resource_aliases(statement)
    try:
        import sqlglot
        from sqlglot import expressions as exp

        tree = sqlglot.parse_one(statement, read="sqlite")
        while isinstance(tree, exp.SetOperation):  # a UNION is named by its first SELECT
            tree = tree.left
        projections = list(tree.selects) if isinstance(tree, exp.Select) else None
    except Exception:  # sqlglot cannot parse every stackql statement; fall back to the tokens
        projections = None
    if projections is None or len(projections) != len(texts):
        return [_item_from_tokens(text, tables, aliases) for text in texts]
    items = []
    for proj, text in zip(projections, texts):
        if isinstance(proj, exp.Star):
            items.append(SelectItem(None, text, tuple(dict.fromkeys(tables))))
        elif isinstance(proj, exp.Column) and isinstance(proj.this, exp.Star):
            target = aliases.get(proj.table) or ".".join(p.name for p in proj.parts[:-1])
            items.append(SelectItem(None, text, (target,) if target else ()))
        elif isinstance(proj, exp.Alias):
            items.append(SelectItem(proj.alias, text))
        elif isinstance(proj, exp.Column):
            items.append(SelectItem(proj.name, text))
        else:
            items.append(SelectItem(None, text))
    return items


def _item_from_tokens(text: str, tables: list[str], aliases: dict[str, str]) -> SelectItem:
    sig = [t for t in tokenize(text) if t.significant]
    if len(sig) == 1 and sig[0].text == "*":
        return SelectItem(None, text, tuple(dict.fromkeys(tables)))
    if len(sig) == 3 and sig[1].text == "." and sig[2].text == "*":
        target = aliases.get(sig[0].value, "")
        return SelectItem(None, text, (target,) if target else ())
    if len(sig) >= 3 and sig[-2].keyword == "AS" and sig[-1].is_ident:
        return SelectItem(sig[-1].value, text)
    if sig and all(t.is_ident if i % 2 == 0 else t.text == "." for i, t in enumerate(sig)) and len(sig) % 2 == 1:
        return SelectItem(sig[-1].value, text)
    return SelectItem(None, text)


_META_COLUMNS = (
    (r"SHOW\s+(?:EXTENDED\s+)?PROVIDERS\b", ["name", "version"], None),
    (r"SHOW\s+EXTENDED\s+SERVICES\b", ["id", "name", "title", "description", "version", "preferred"], None),
    (r"SHOW\s+SERVICES\b", ["id", "name", "title"], None),
    (r"SHOW\s+EXTENDED\s+RESOURCES\b", ["name", "id", "description"], None),
    (r"SHOW\s+RESOURCES\b", ["name", "id"], None),
    (r"SHOW\s+(?:EXTENDED\s+)?METHODS\b", ["MethodName", "RequiredParams", "SQLVerb"], None),
    (r"(?:DESCRIBE|DESC)\s+EXTENDED\b", ["name", "type", "description"], None),
    (r"(?:DESCRIBE|DESC)\b", ["name", "type"], None),
    (r"SHOW\s+INSERT\b", ["insert_statement"], None),
    (r"SHOW\s+VERSION\b", ["version"], None),
    (r"REGISTRY\s+LIST\s+\S", ["provider", "versions"], None),
    (r"REGISTRY\s+LIST\b", ["provider", "version"], None),
)


def meta_columns(statement: str) -> list[str] | None:
    """The documented column order of a meta-command (SHOW …, DESCRIBE …, REGISTRY LIST); else None."""
    text = strip_comments(statement).strip().rstrip(";").strip()
    for pattern, columns, _ in _META_COLUMNS:
        if re.match(pattern, text, re.I):
            return list(columns)
    return None
