"""``rank1-server`` with llama.cpp's weight repacking off, for a rank1-server without its
own ``--no-repack`` option.

CPUs that advertise AMX inside sandboxes that trap it (gVisor-style containers) die with
SIGILL on the first decode of a Q4_0 model when llama.cpp repacks the weights for its AMX
kernels; ``use_extra_bufts = False`` in the model parameters avoids them. ``bench.py
--cpu`` runs the server through this file when ``rank1-server --help`` lacks
``--no-repack`` (and passes that flag otherwise); once every rank1-server has the flag,
this file can go.

Usage: ``python benchmarks/gpu/no_repack.py <rank1-server arguments>``
"""

from __future__ import annotations

import sys

from rank1_server import backend
from rank1_server.cli import main


def _patch() -> None:
    lib = backend.import_llama_cpp()
    default_params = lib.llama_model_default_params

    def params():  # type: ignore[no-untyped-def]
        p = default_params()
        p.use_extra_bufts = False
        return p

    lib.llama_model_default_params = params


if __name__ == "__main__":
    _patch()
    sys.exit(main(sys.argv[1:]))
