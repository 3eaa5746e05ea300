"""``python -m bench``: the command line (:func:`bench.cli.main`); a Ctrl-C while it loads is exit 130, not a traceback."""

import sys

try:
    from .cli import main
except KeyboardInterrupt:
    print("bench: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
