"""How every command-line tool ends on an error: the clear message and a
non-zero exit status, without a traceback unless asked (``--debug`` or
``MMBACKBONES_DEBUG=1``)."""
import os
import os.path as osp
import sys
from typing import Callable, Optional

DEBUG_FLAG = '--debug'
DEBUG_ENV = 'MMBACKBONES_DEBUG'
#: what a user's input causes: a missing file, a bad config value, a wrong checkpoint,
#: a run that cannot fit; said in their own words, without the type's name
USER_ERRORS = (OSError, ValueError, KeyError, MemoryError, ImportError, RuntimeError)


def debugging(argv: Optional[list] = None) -> bool:
    argv = sys.argv if argv is None else argv
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, '0') not in ('', '0')


def run(main: Callable[[], object]) -> None:
    """``main()`` of a tool: its return value is the exit status when it is an
    int; an exception ends the tool with ``<tool>: error: <message>`` (exit 1),
    with the traceback only when debugging."""
    debug = debugging()
    if DEBUG_FLAG in sys.argv:
        sys.argv.remove(DEBUG_FLAG)
    tool = osp.basename(sys.argv[0])
    try:
        status = main()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 (every error reaches the user as one line)
        if debug:
            raise
        message = str(err) if isinstance(err, USER_ERRORS) and str(err) else \
            f'{type(err).__name__}: {err}'
        if isinstance(err, KeyError):
            message = f'missing key {err}'
        sys.stderr.write(f'{tool}: error: {message}\n'
                         f'({DEBUG_FLAG} or {DEBUG_ENV}=1 shows the traceback)\n')
        sys.exit(1)
    finally:
        close_process_group()
    sys.exit(status if isinstance(status, int) else 0)


def close_process_group() -> None:
    """Destroy the distributed process group a run under torchrun created: left
    to the interpreter's exit, its threads could abort the process after a
    finished run ("terminate called without an active exception", exit -6)."""
    dist = sys.modules.get('torch.distributed')
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
