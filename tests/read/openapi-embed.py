#!/usr/bin/env python3
"""Embed plugin/openapi.json into plugin/openapi.inc as a C string literal.

  openapi-embed.py JSON INC            write INC from JSON
  openapi-embed.py --check JSON INC    exit 1 when INC is not what JSON gives

The plugin serves the embedded bytes; the check keeps the two in step.
"""
import sys


def render(data: bytes) -> str:
    out = ["/* Generated from openapi.json by tests/read/openapi-embed.py: do not edit. */\n",
           "static const char tel_openapi_json[] =\n"]
    for line in data.splitlines(keepends=True):
        lit = []
        for b in line:
            c = chr(b)
            if c == "\\" or c == '"':
                lit.append("\\" + c)
            elif c == "\n":
                lit.append("\\n")
            elif 0x20 <= b < 0x7F and c != "?":  # '?' could start a trigraph
                lit.append(c)
            else:
                lit.append("\\%03o" % b)
        out.append('    "' + "".join(lit) + '"\n')
    out.append("    ;\n")
    return "".join(out)


def main(argv):
    check = len(argv) > 1 and argv[1] == "--check"
    args = argv[2:] if check else argv[1:]
    if len(args) != 2:
        sys.stderr.write(__doc__)
        return 2
    with open(args[0], "rb") as f:
        text = render(f.read())
    if check:
        with open(args[1], "r", encoding="ascii") as f:
            if f.read() != text:
                sys.stderr.write("%s is stale: run tests/read/openapi-embed.py %s %s\n"
                                 % (args[1], args[0], args[1]))
                return 1
        print("ok: %s matches %s" % (args[1], args[0]))
        return 0
    with open(args[1], "w", encoding="ascii") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
