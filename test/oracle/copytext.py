"""PostgreSQL COPY text escaping, the line format of the corpus and of the fixtures.

Backslash, TAB, LF, CR, VT, FF and BS are escaped; everything else stays raw, so
files are split on '\\n' only (never str.splitlines, which also breaks at U+2028).
"""
ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r",
           "\x0b": "\\v", "\x0c": "\\f", "\x08": "\\b"}
_TABLE = str.maketrans(ESCAPES)
_UNESCAPES = {v[1]: k for k, v in ESCAPES.items()}


def escape(text):
    """One text as one COPY line (without the newline)."""
    return text.translate(_TABLE)


def unescape(line):
    """Inverse of escape(); a backslash before anything else is an error."""
    out, i, n = [], 0, len(line)
    while i < n:
        c = line[i]
        if c == "\\":
            if i + 1 >= n or line[i + 1] not in _UNESCAPES:
                raise ValueError("bad escape at %d in %r" % (i, line[:80]))
            out.append(_UNESCAPES[line[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def read_lines(path):
    """Texts of a COPY-escaped file, one per line."""
    with open(path, encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [unescape(l) for l in lines]
