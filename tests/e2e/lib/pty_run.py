#!/usr/bin/env python3
# pty_run.py LOG CMD [ARGS...]: run CMD with a pseudo-terminal as its stdin,
# stdout and stderr (so isatty() is true, as for a user at a terminal) and
# append everything it writes to LOG. SIGTERM is passed on to CMD; the exit
# status is CMD's (128 + signal when killed), so a test can stop it by this
# process's pid as it would stop CMD itself.
import os
import pty
import signal
import sys

log = open(sys.argv[1], "ab", buffering=0)
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGTERM))
while True:
    try:
        data = os.read(fd, 65536)
    except OSError:  # EIO: the child closed its end of the terminal
        break
    if not data:
        break
    log.write(data)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
