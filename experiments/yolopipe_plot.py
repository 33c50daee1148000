#!/usr/bin/env python3
"""yolopipe's figures, drawn with matplotlib from the files yolopipe writes. The yolopipe binary runs
it from its own folder (meson copies it and its modules beside the binary and installs them beside
it); run it by hand with Debian's python3 (apt-get install python3-matplotlib):

  yolopipe_plot.py run RUNDIR                      a training run: results.png, PR/F1/P/R curves,
                                                   confusion matrices (plot_run.py)
  yolopipe_plot.py study POINTS.csv [--out DIR] [--title TITLE]
                                                   a scaling study's figures (plot_study.py)
  yolopipe_plot.py trace TRACE.json OUT.png [--title TITLE]
                                                   a Chrome trace as a Gantt chart (plot_trace.py)

Exit codes: 0 done, 2 bad input (one line saying which file and what is wrong), 3 matplotlib missing."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the modules lie beside this file

import plot_run  # noqa: E402
import plot_study  # noqa: E402
import plot_trace  # noqa: E402

PROG = "yolopipe_plot.py"
COMMANDS = {"run": (plot_run, "a training run's figures"), "study": (plot_study, "a scaling study's figures"),
            "trace": (plot_trace, "a Chrome trace as a Gantt chart")}


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit code 2, as yolopipe's commands do
        sys.stderr.write(f"{PROG}: {message} (see {self.prog} --help)\n")
        sys.exit(2)


class MatplotlibMissing(Exception):
    pass


def pyplot():
    """matplotlib.pyplot with the Agg backend (no display needed)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MatplotlibMissing() from None
    return plt


def main():
    parser = Parser(prog=PROG, description=__doc__.split("\n\n")[0],
                    formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    commands = parser.add_subparsers(dest="command", metavar="{run,study,trace}", parser_class=Parser)
    commands.required = True
    for name, (module, summary) in COMMANDS.items():
        module.add_arguments(commands.add_parser(name, help=summary, description=module.__doc__,
                                                 formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args()
    module = COMMANDS[args.command][0]
    try:
        return module.run(args, pyplot)
    except plot_study.UserError as e:
        # The study's messages already start with a position (file:line:col); the others name the file.
        print(str(e) if args.command == "study" else f"{PROG}: {e}", file=sys.stderr)
        return 2
    except MatplotlibMissing:
        print(f"{PROG}: needs matplotlib (Debian: apt-get install python3-matplotlib; run with /usr/bin/python3)",
              file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
