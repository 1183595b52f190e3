"""Which crates are compiled into a wheel's extension, read from the binary: panic
locations name each crate's source path (`…/wgpu-core-30.0.2/src/…`), which stripping
keeps. Fails if any crate matching BANNED is among them, or if no path is found at all
(then the check would see nothing).

    python3 tools/check_wheel_crates.py WHEEL 'clap|axum|tokio|plotters|hyper'
"""

import re
import sys
import zipfile


def crates(wheel):
    with zipfile.ZipFile(wheel) as z:
        so = next(n for n in z.namelist() if n.endswith((".so", ".pyd", ".dylib")))
        data = z.read(so)
    found = re.findall(rb"[/\\]([A-Za-z0-9_-]+)-\d+\.\d+\.\d+[/\\]src[/\\]", data)
    return so, {c.decode() for c in found}


def main(wheel, banned):
    so, names = crates(wheel)
    if not any(n.startswith("wgpu-core") for n in names):
        sys.exit(f"error: {so}: no crate source paths found; the check would see nothing")
    bad = sorted(n for n in names if re.fullmatch(rf"({banned})([_-][a-z]+)?", n))
    if bad:
        sys.exit(f"error: {so} has the command line's crates compiled in: {', '.join(bad)}")
    print(f"{so}: {len(names)} crates compiled in, none of {banned}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
