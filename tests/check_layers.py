#!/usr/bin/env python3
"""check_layers.py: the layers of the C sources point down only.

Reads every `#include "..."` of the project's C files (every .c and .h of
the source tree but tests/ and meson build directories), maps each file to
its folder (server/<job>/ is <job>; any other top-level folder, db/ and
tokens/, is its own name) and to its module (the .c/.h pair of one stem,
e.g. server/relay/dsn), and reports, one line per finding as file:line:

  - an include of a folder that ALLOWED below does not list for the
    including folder (an include that points up, or sideways between
    smtp, relay and api), and a file in a folder the table does not know;
  - a private header (<module>_internal.h) included from another folder;
  - a circle of includes between modules (a strongly connected component
    of the module graph with more than one module). A private header
    belongs to its folder, not to a module of its own: what it includes
    counts for each module that includes it.

Exit status 1 when there is a finding, 0 when there is none.
Usage: check_layers.py [SOURCE_ROOT] (default: the folder above tests/).
Standard library only.
"""

import os
import re
import sys

# What each folder may include, besides itself: the layers of the server,
# lowest first. A folder missing here is a finding, so a new one (a
# top-level plugin folder such as imap/, or server/cluster) must be added
# to this table, with the folders below it that it uses, before its first
# file builds. smtp, relay, api and sent are siblings: none includes another.
ALLOWED = {
    "base": (),
    "tokens": (),
    "db": ("base", "tokens"),
    "protocol": ("base",),
    "runtime": ("base",),
    "net": ("base",),
    "auth": ("base", "tokens", "db", "protocol"),
    "dkim": ("base", "db", "protocol"),
    "limits": ("base", "db", "runtime"),
    "smtp": ("base", "tokens", "db", "protocol", "runtime", "net", "auth", "limits"),
    "relay": ("base", "tokens", "db", "protocol", "runtime", "net"),
    "api": ("base", "tokens", "db", "protocol", "runtime", "net"),
    "sent": ("base", "tokens", "db", "protocol", "runtime", "net"),
    "daemon": ("base", "tokens", "db", "protocol", "runtime", "net", "auth", "dkim", "limits", "smtp", "relay", "api",
               "sent"),
    "admin": ("base", "tokens", "db", "protocol", "auth"),
    # the Dovecot plugin: built against Dovecot's headers alone, it runs in
    # Dovecot's imap process and talks to submitd over HTTP only
    "imap": (),
}

# Top-level folders that are not product code.
SKIPPED = {"tests"}

INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')
PRIVATE_SUFFIX = "_internal.h"


def folder_of(rel):
    """server/smtp/x.c -> smtp; db/store.h -> db; server/x.c -> server."""
    parts = rel.split("/")
    if parts[0] == "server" and len(parts) > 2:
        return parts[1]
    return parts[0]


def is_private(rel):
    return rel.endswith(PRIVATE_SUFFIX)


def module_of(rel):
    """The module of a file: its path without the extension; None for a
    private header, which belongs to its folder."""
    if is_private(rel):
        return None
    return os.path.splitext(rel)[0]


def is_build_dir(path):
    return os.path.exists(os.path.join(path, "meson-private")) or os.path.exists(os.path.join(path, "build.ninja"))


def sources(root):
    """Relative paths (with /) of the C files to check, sorted."""
    out = []
    for top in sorted(os.listdir(root)):
        path = os.path.join(root, top)
        if top.startswith(".") or top in SKIPPED or not os.path.isdir(path) or is_build_dir(path):
            continue
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.endswith((".c", ".h")):
                    out.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    return out


def includes(root, rel):
    """(line number, included file relative to root) for each quoted
    include that names a file of the tree, searched as the compiler does:
    beside the including file first, then from the source root (the one
    include directory). Others (system or generated headers) are skipped."""
    out = []
    here = os.path.dirname(rel)
    with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            for base in (here, ""):
                cand = os.path.normpath(os.path.join(root, base, m.group(1)))
                if os.path.isfile(cand):
                    target = os.path.relpath(cand, root).replace(os.sep, "/")
                    out.append((n, target))
                    break
    return out


def check_folders(files, incs):
    findings = []
    for rel in files:
        src = folder_of(rel)
        if src not in ALLOWED:
            findings.append("%s:1: folder %s is not in the layer table (ALLOWED in tests/check_layers.py)"
                            % (rel, src))
            continue
        for n, target in incs[rel]:
            dst = folder_of(target)
            if target.startswith("..") or (dst != src and dst not in ALLOWED[src]):
                allowed = ", ".join(ALLOWED[src]) or "nothing"
                findings.append("%s:%d: %s may not include %s (%s); %s may include: %s"
                                % (rel, n, src, dst, target, src, allowed))
            elif is_private(target) and dst != src:
                findings.append("%s:%d: %s is private to %s" % (rel, n, target, dst))
    return findings


def module_edges(files, incs):
    """{module: {module: (file, line)}}: module A includes module B, with the
    first place that says so. A private header's includes count for every
    module that includes it."""
    edges = {}
    for rel in files:
        mod = module_of(rel)
        if mod is None:
            continue
        edges.setdefault(mod, {})
        seen = set()
        todo = [(rel, n, t) for n, t in incs[rel]]
        while todo:
            where, n, target = todo.pop(0)
            dst = module_of(target)
            if dst is None:
                if target not in seen and target in incs:
                    seen.add(target)
                    todo += [(target, m, t) for m, t in incs[target]]
                continue
            if dst != mod:
                edges[mod].setdefault(dst, (where, n))
    return edges


def circles(edges):
    """Strongly connected components of more than one module (Tarjan's
    algorithm, iterative), each as a sorted list."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def check_circles(edges):
    findings = []
    for comp in circles(edges):
        members = set(comp)
        for a in comp:
            for b in sorted(edges[a]):
                if b in members:
                    where, n = edges[a][b]
                    findings.append("%s:%d: include circle: %s includes %s (circle: %s)"
                                    % (where, n, a, b, ", ".join(comp)))
    return findings


def main(argv):
    root = os.path.abspath(argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
    files = sources(root)
    if not files:
        print("check_layers: no C files under %s" % root, file=sys.stderr)
        return 2
    incs = {rel: includes(root, rel) for rel in files}
    findings = check_folders(files, incs) + check_circles(module_edges(files, incs))
    for f in findings:
        print(f)
    print("check_layers: %d files, %d includes, %d findings"
          % (len(files), sum(len(v) for v in incs.values()), len(findings)),
          file=sys.stderr if findings else sys.stdout)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
