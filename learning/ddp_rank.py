"""torchrun's entry point for one rank of a data-parallel job (see learning/ddp.py): Django is
set up before anything that touches the models is imported."""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "qigcenter.settings")
    import django

    django.setup()
    from learning.ddp import main

    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is written (outcome, checkpoint, database): skip the interpreter's teardown,
    # which takes seconds with a process group's threads about, so a stop is quick.
    os._exit(code)
