#!/usr/bin/env python3
# SPDX-License-Identifier: EUPL-1.2
"""Turns docs/configuration.md into scdoc source for zone-mta.yaml(5), so
the man page says what the documentation says, word for word.

usage: md2scd.py configuration.md NAME SECTION DATE > out.scd
"""
import re
import sys


def inline(text):
    """Markdown spans to scdoc: `code` and **strong** bold, links as text."""
    out, pos = [], 0
    for m in re.finditer(r"`([^`]*)`|\*\*([^*]+)\*\*|\[([^\]]+)\]\(([^)]+)\)", text):
        out.append(escape(text[pos:m.start()]))
        if m.group(1) is not None:
            out.append("*" + escape(m.group(1)) + "*")
        elif m.group(2) is not None:
            out.append("*" + escape(m.group(2)) + "*")
        else:
            out.append(escape(m.group(3)))
        pos = m.end()
    out.append(escape(text[pos:]))
    return "".join(out)


def escape(text):
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_")


def convert(md, name, section, date):
    lines = md.splitlines()
    title = lines[0].lstrip("# ").strip()
    out = [f"{name}({section}) \"zone-mta\" \"{date}\"", "", "# NAME", "",
           f"{name} - the zone-mta {title.lower()}", ""]
    in_code = False
    para = []

    def flush():
        if para:
            out.append(inline(" ".join(para)))
            out.append("")
            para.clear()

    for line in lines[1:]:
        if line.startswith("```"):
            flush()
            out.append("```")
            in_code = not in_code
            continue
        if in_code:
            out.append("\t" + line if line else "")
            continue
        m = re.match(r"^(#{2,4}) (.*)$", line)
        if m:
            flush()
            level, text = len(m.group(1)), m.group(2).strip()
            if level == 2:
                out += ["# " + escape(text.upper()), ""]
            else:
                out += ["## " + inline(text), ""]
            continue
        if not line.strip():
            flush()
            continue
        m = re.match(r"^(\s*)(- |\d+\. )(.*)$", line)
        if m:
            flush()
            bullet = "-" if m.group(2) == "- " else "."
            para.append(m.group(3))
            out.append(f"{'  ' * (len(m.group(1)) // 2)}{bullet} " + inline(" ".join(para)))
            para.clear()
            continue
        if out and re.match(r"^\s*[-.] ", out[-1]) and line.startswith("  "):
            out[-1] += " " + inline(line.strip())
            continue
        para.append(line.strip())
    flush()
    out += ["# SEE ALSO", "", "*zone-mta*(8)", ""]
    return "\n".join(out)


if __name__ == "__main__":
    src, name, section, date = sys.argv[1:5]
    with open(src, encoding="utf-8") as f:
        sys.stdout.write(convert(f.read(), name, section, date))
