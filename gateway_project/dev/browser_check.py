"""Make sure the browser tests have Debian's Chromium; install it when we can (root + apt)."""

import os
import shutil
import subprocess
import sys

CHROMIUM = "/usr/bin/chromium"


def main() -> int:
    if os.path.exists(CHROMIUM):
        return 0
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("make test: installing Debian's chromium for the browser tests", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        command = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
        if subprocess.call(command, env=env) == 0:
            return 0
    print(
        "make test: /usr/bin/chromium is missing; browser tests will skip "
        "(install it with: sudo apt-get install chromium)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
