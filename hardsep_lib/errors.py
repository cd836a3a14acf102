"""One error family: every expected failure (bad input, bad options) is a HardsepError.

Each script catches HardsepError once, prints ``<script>: error: <message>`` and exits with
code 2 (argparse's code for bad usage); anything else is a bug and keeps its traceback.
"""

import sys


class HardsepError(Exception):
    """An expected failure whose message tells the user what to change."""


class OptionError(HardsepError):
    """A command-line or YAML option out of range, of the wrong type, or inconsistent."""


class DataError(HardsepError):
    """Training data that cannot drive a run (no usable mixture, no speakers, ...)."""


def exit_on_error(script, main, *args):
    """Runs ``main(*args)``; a HardsepError ends the process with one line and exit code 2."""
    try:
        return main(*args)
    except HardsepError as error:
        print(f"{script}: error: {error}", file=sys.stderr)
        sys.exit(2)
