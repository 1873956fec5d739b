"""``python -m runtime.serve.runner FD``: a runner process on the socket whose descriptor is FD."""
import os
import sys

from runtime.serve.runner.child import main

code = main(sys.argv[1:])
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
