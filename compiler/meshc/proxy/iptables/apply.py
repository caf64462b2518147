"""`APPLY_SCRIPT`: the POSIX sh program that installs a meshc rules file on a VM.

Why a script and not plain ``iptables-restore --noflush < file``: with --noflush a
``:MESHC_X - [0:0]`` line empties an existing user chain (so the meshc chains are rewritten, not
appended to), but ``-A OUTPUT -j MESHC_OUTPUT`` appends one more jump on every run, and a
``-D`` for a jump that is not there makes the whole restore fail. A file alone cannot know
whether the jump exists, so the script reads the current state first.

What it does, in ONE ``iptables-restore --noflush`` run (each table is one atomic commit):
for every table in the file, right after ``*table`` it adds a ``-D`` for each rule in
iptables-save that jumps (``-j``/``-g``) from a non-meshc chain into a MESHC_* chain (whatever
an older meshc version wrote); then the file's declarations flush the meshc chains and its rules
re-create everything; before COMMIT it flushes and deletes MESHC_* chains the file no longer
declares. Tables that hold meshc chains but are absent from the file get a section that only
removes them, so ``meshc-iptables-apply /dev/null`` uninstalls. Other tools' chains, rules and
chain policies are never touched.

IPTABLES_SAVE / IPTABLES_RESTORE override the binaries (e.g. iptables-legacy-save and
iptables-legacy-restore); save and restore must use the same backend.
"""

from __future__ import annotations

APPLY_SCRIPT = r"""#!/bin/sh
# meshc-iptables-apply FILE.rules -- install a meshc iptables-restore file idempotently.
# Removes the jumps into MESHC_* chains left by earlier meshc files and MESHC_* chains the file
# no longer declares, in the same atomic per-table commit. `meshc-iptables-apply /dev/null`
# removes everything meshc installed. Other tools' rules are kept.
set -eu
rules=${1:?usage: meshc-iptables-apply FILE.rules}
[ -r "$rules" ] || { echo "meshc-iptables-apply: cannot read $rules" >&2; exit 2; }
state=$(${IPTABLES_SAVE:-iptables-save})
printf '%s\n' "$state" | awk -v rules="$rules" '
function drop(t,   c, n, k) {
  n = split(own[t], c, " ")
  for (k = 1; k <= n; k++) if (!(c[k] in decl)) print "-F " c[k]
  for (k = 1; k <= n; k++) if (!(c[k] in decl)) print "-X " c[k]
}
/^\*/ { t = substr($0, 2); next }
/^:MESHC_/ { own[t] = own[t] " " substr($1, 2); seen[t] = 1; next }
$1 == "-A" && $2 !~ /^MESHC_/ && / -[jg] MESHC_/ {
  sub(/^-A /, "-D "); del[t] = del[t] $0 "\n"; seen[t] = 1
}
END {
  while ((getline line < rules) > 0) {
    if (line ~ /^\*/) {
      t = substr(line, 2); done[t] = 1; split("", decl)
      print line; printf "%s", del[t]; continue
    }
    if (line ~ /^:MESHC_/) { split(line, f, " "); decl[substr(f[1], 2)] = 1 }
    if (line == "COMMIT") drop(t)
    print line
  }
  split("", decl)
  n = split("raw mangle nat filter security", order, " ")
  for (i = 1; i <= n; i++) {
    t = order[i]
    if (seen[t] && !(t in done)) { print "*" t; printf "%s", del[t]; drop(t); print "COMMIT" }
  }
}' | ${IPTABLES_RESTORE:-iptables-restore} --noflush --wait
"""
