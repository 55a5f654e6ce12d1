"""The rules docs/architecture.md states about the code, checked on the tree as it is.

  - no cycle of calls among the objects of src/pg, nor among those of src/engine (from
    their symbols: nm on the .o files the build left, so run it after make);
  - no cycle of #include "..." among the headers of src/ and kernels/, and no header of
    src/pg that includes postgres.h;
  - no function of src/ or kernels/ over 150 lines, but the unrolled kernel bodies named
    in LONG_ALLOWED;
  - every source file of the tree named once in docs/architecture.md's tables.

    python3 test/structure/check_structure.py      (from the repository root)
Prints one line per rule and FAIL lines; exits 1 when a rule is broken.
"""
import collections
import glob
import os
import re
import subprocess
import sys

MAX_LINES = 150
# bodies that are one unrolled kernel; splitting them would change what the compiler makes
LONG_ALLOWED = {("kernels/gpu_flash.cu", "flash_attention_kernel")}
SOURCE_ENDINGS = (".c", ".h", ".cu", ".cuh", ".cpp", ".py", ".sh", ".mk")
ARCH = "docs/architecture.md"

failures = 0


def fail(msg):
    global failures
    failures += 1
    print("FAIL " + msg)


def tracked_files():
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                         capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if os.path.exists(f)]


def cycles(graph):
    """Strongly connected components of more than one node (or a node calling itself)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                found.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def check_calls(directory):
    # objects of the sources there now (a renamed file's old object may linger)
    objects = sorted(o for o in glob.glob(directory + "/*.o") if os.path.exists(o[:-2] + ".c"))
    if not objects:
        fail("%s: no objects to read; run make first" % directory)
        return
    defined, used = {}, collections.defaultdict(set)
    for o in objects:
        for line in subprocess.run(["nm", o], capture_output=True, text=True, check=True).stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in "TDBRC":
                defined[parts[2]] = o
            elif len(parts) == 2 and parts[0] == "U":
                used[o].add(parts[1])
    graph = {o: {defined[s] for s in syms if s in defined and defined[s] != o} for o, syms in used.items()}
    found = cycles(graph)
    for c in found:
        fail("%s: calls go round %s" % (directory, " -> ".join(os.path.basename(x) for x in c)))
    print("calls in %s: %d objects, %s" % (directory, len(objects), "no cycle" if not found else "%d cycles" % len(found)))


def check_includes(files):
    headers = [f for f in files if f.endswith((".h", ".cuh")) and f.startswith(("src/", "kernels/"))]
    by_name = collections.defaultdict(list)
    for h in headers:
        by_name[os.path.basename(h)].append(h)
    graph = {}
    for h in headers:
        text = open(h, errors="replace").read()
        targets = set()
        for name in re.findall(r'^\s*#\s*include\s+"([^"]+)"', text, re.M):
            base = os.path.basename(name)
            same_dir = os.path.join(os.path.dirname(h), base)
            if same_dir in by_name[base]:
                targets.add(same_dir)
            elif len(by_name[base]) == 1:
                targets.add(by_name[base][0])
        graph[h] = targets
        if h.startswith("src/pg/") and re.search(r'^\s*#\s*include\s+"postgres\.h"', text, re.M):
            fail("%s includes postgres.h (each .c file includes it first)" % h)
    found = cycles(graph)
    for c in found:
        fail("headers include each other: %s" % " -> ".join(c))
    print("includes: %d headers, %s" % (len(headers), "no cycle" if not found else "%d cycles" % len(found)))


def function_lengths(path):
    """(name, lines) of each function body that opens with '{' in column 0."""
    lines = open(path, errors="replace").read().split("\n")
    i = 0
    while i < len(lines):
        if lines[i].startswith("{"):
            name = "?"
            for j in range(i - 1, max(i - 8, -1), -1):
                m = re.match(r"^(?:[\w\s\*]*?\b)?(\w+)\s*\(", lines[j])
                if m and not lines[j].startswith((" ", "\t")):
                    name = m.group(1)
                    break
            k = i + 1
            while k < len(lines) and not lines[k].startswith("}"):
                k += 1
            yield name, k - i + 1
            i = k
        i += 1


def check_lengths(files):
    code = [f for f in files if f.startswith(("src/", "kernels/")) and f.endswith((".c", ".cu"))]
    longest = (0, "")
    for f in code:
        for name, n in function_lengths(f):
            if n > longest[0]:
                longest = (n, "%s %s" % (f, name))
            if n > MAX_LINES and (f, name) not in LONG_ALLOWED:
                fail("%s: %s is %d lines (at most %d)" % (f, name, n, MAX_LINES))
    print("function lengths: %d files, longest checked %d lines (%s)" % (len(code), longest[0], longest[1]))


def named_in_architecture():
    """Files the tables of docs/architecture.md name: a path with a '/', or a bare name in
    the directory of the path before it in its row, or of the section (### dir)."""
    names = collections.Counter()
    section_dir = ""
    for line in open(ARCH).read().split("\n"):
        m = re.match(r"^###\s+([\w./-]+)", line)
        if m:
            # "### src/engine: the engine": bare names there are in src/engine
            heading = m.group(1).rstrip(":")
            section_dir = heading if os.path.isdir(heading) and heading not in (".", "test") else ""
            continue
        if not line.startswith("| `"):
            continue
        first_cell = line.split("|")[1]
        current = section_dir
        for token in re.findall(r"`([^`]+)`", first_cell):
            if "/" in token:
                current = os.path.dirname(token)
                names[token] += 1
            else:
                names[os.path.join(current, token) if current else token] += 1
    return names


def check_architecture(files):
    names = named_in_architecture()
    sources = [f for f in files
               if (f.endswith(SOURCE_ENDINGS) or f.startswith("bin/") or f == ".ci/run"
                   or re.match(r"^pgbert--[\d.-]+\.sql$", f) or f == "pgbert.control")
               and not f.startswith(("sql/", "expected/", "test/fixtures/"))]
    missing = [f for f in sources if names[f] == 0]
    twice = [f for f in sources if names[f] > 1]
    for f in missing:
        fail("%s names no %s" % (ARCH, f))
    for f in twice:
        fail("%s names %s %d times" % (ARCH, f, names[f]))
    gone = [n for n in names if "*" not in n and not os.path.exists(n)]
    for n in gone:
        fail("%s names %s, which does not exist" % (ARCH, n))
    print("%s: %d source files, %d named, %d not named, %d named twice, %d names of files that do not exist"
          % (ARCH, len(sources), len(sources) - len(missing), len(missing), len(twice), len(gone)))


def main():
    files = tracked_files()
    check_calls("src/pg")
    check_calls("src/engine")
    check_includes(files)
    check_lengths(files)
    check_architecture(files)
    print("%d failed" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
