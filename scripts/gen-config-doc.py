#!/usr/bin/env python3
# Writes deploy/CONFIG.md from the doc comments in config/src/raw.rs (B3: the raw types are the
# reference). Run from the repository root after changing a key; config/tests/docs.rs checks it.
import re
src=open('config/src/raw.rs').read()
out=["# labgate configuration reference","",
"labgate reads TOML: one file, or every `*.toml` under a directory (sorted; hidden entries such as `.git` skipped).",
"In a directory, arrays of tables (`[[network]]`, `[[service]]`, ...) are concatenated across files; each single table (`[server]`, `[listen]`, `[admin]`, `[dns]`, `[tunnel]`, `[tls]`, `[acme]`) may appear in one file only.",
"Unknown keys are errors. Relative paths are relative to the file that names them.",
"`labgate check PATH` validates without binding sockets (exit 0 valid, 64 invalid); every error names file, line, column and key.",
"",
"This file is written from the doc comments in `config/src/raw.rs`; a test checks that every key there is listed here.",
"See `deploy/examples/homelab.toml` for a whole homelab.",
"",
"## What is reloaded",
"",
"Everything is hot-reloaded atomically (networks, zones, records, services, upstreams, blocklists, certificates, `[admin]` with its credentials file) except `[server]` and `[listen]`: a change there is logged at warn and applied at the next start.",
""]
bar="\\|"
for m in re.finditer(r'((?:///[^\n]*\n)+)#\[derive[^\n]*\]\n(?:#\[serde[^\n]*\]\n)*pub struct (\w+) \{(.*?)\n\}', src, re.S):
    doc=" ".join(l.strip()[3:].strip() for l in m.group(1).strip().split('\n'))
    name=m.group(2); body=m.group(3)
    title = 'Top level' if name=='RawFile' else doc.split(':')[0]
    out += [f"## {title}", "", doc, "", "| key | meaning |", "|---|---|"]
    for f in re.finditer(r'((?:[ \t]*///[^\n]*\n)+)((?:[ \t]*#\[serde[^\n]*\]\n)*)[ \t]*pub (\w+): ([^\n]+),', body):
        fdoc=" ".join(l.strip()[3:].strip() for l in f.group(1).strip().split('\n'))
        key=f.group(3)
        ren=re.search(r'rename = "(\w+)"', f.group(2))
        if ren: key=ren.group(1)
        fdoc=fdoc.replace('|',bar)
        out.append(f"| `{key}` | {fdoc} |")
    out.append("")
open('deploy/CONFIG.md','w').write("\n".join(out))
