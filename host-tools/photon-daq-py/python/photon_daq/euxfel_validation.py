"""EXtra-data's ``extra_data.validation`` over the euxfel crate's validation: the
same check names, problem messages and fields, and ``FileValidator``,
``RunValidator``, ``ValidationError`` and ``main`` with EXtra-data's signatures.
Also reachable as ``photon_daq.euxfel.validation``.

The checks run in Rust with the GIL released (a run's files in parallel threads
rather than EXtra-data's process pool). ``FileValidator`` and ``RunValidator`` run
EXtra-data's checks only; :func:`validate` also runs the cross-file checks it
lacks (``xfel-validate``'s full set). Field values are strings.
"""

import ast
import os
import sys
from argparse import Action, ArgumentParser

from . import _native

__all__ = [
    "FileAccess", "FileValidator", "RunValidator", "ValidationError", "main", "validate",
    "check_names",
]

# EXtra-data's own checks, per file and per run directory (the others are ours).
_XD_FILE_CHECKS = (
    "train_ids_nonzero", "train_ids_order", "index_control", "index_instrument",
    "control_timestamps_order",
)
_XD_RUN_CHECKS = ("run_json_cache",)


def check_names():
    """Every check name: EXtra-data's, then the checks it lacks."""
    return list(_native.check_names())


def _not_extra_data():
    return [n for n in _native.check_names() if n not in _XD_FILE_CHECKS + _XD_RUN_CHECKS]


def _field(key, value):
    # EXtra-data gives dataset shapes as tuples; the Rust side gives their repr.
    if key.endswith("_shape"):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def _problems(pairs):
    return [dict(msg=msg, **{k: _field(k, v) for k, v in fields.items()})
            for msg, fields in pairs]


class ValidationError(Exception):
    def __init__(self, problems):
        self.problems = problems

    def __str__(self):
        lines = []
        for prob in self.problems:
            lines.extend(["", prob["msg"]])
            for k, v in sorted(prob.items()):
                if k != "msg":
                    lines.append("  {}: {}".format(k, v))
        return "\n".join(lines)


class FileAccess:
    """The file a :class:`FileValidator` checks. Opening it checks that it is a
    readable EuXFEL file (OSError otherwise), as EXtra-data's ``FileAccess`` does."""

    def __init__(self, filename):
        self.filename = os.path.abspath(os.fspath(filename))
        _native.Collection.open_file(self.filename, True)

    def close(self):
        """Nothing is held open between checks."""

    def __repr__(self):
        return f"<FileAccess for {self.filename!r}>"


class FileValidator:
    def __init__(self, file, skip_checks=()):
        self.file = file
        self.filename = file.filename
        self.problems = []
        self.skip_checks = set(skip_checks)

    def validate(self):
        problems = self.run_checks()
        if problems:
            raise ValidationError(problems)

    def run_checks(self):
        skip = sorted(self.skip_checks | set(_not_extra_data()) | set(_XD_RUN_CHECKS))
        self.problems = _problems(_native.validate_file(self.filename, skip))
        return self.problems


class RunValidator:
    def __init__(self, run_dir, term_progress=False, skip_checks=()):
        self.run_dir = run_dir
        self.term_progress = term_progress
        self.filenames = [f for f in os.listdir(run_dir) if f.endswith(".h5")]
        self.problems = []
        self.skip_checks = set(skip_checks)

    def validate(self):
        problems = self.run_checks()
        if problems:
            raise ValidationError(problems)

    def run_checks(self):
        skip = sorted(self.skip_checks | set(_not_extra_data()))
        self.problems = _problems(_native.validate_run(os.fspath(self.run_dir), skip, 0))
        return self.problems


def validate(path, skip_checks=(), extra_checks=True, threads=0):
    """The problems of a file or run directory as EXtra-data's dicts
    (``{'msg': ..., 'file': ..., 'dataset': ...}``); with ``extra_checks`` also
    those of the checks EXtra-data lacks. Unknown check names: ValueError."""
    skip = set(skip_checks)
    if not extra_checks:
        skip |= set(_not_extra_data())
    path = os.fspath(path)
    if os.path.isdir(path):
        return _problems(_native.validate_run(path, sorted(skip), threads))
    return _problems(_native.validate_file(path, sorted(skip | set(_XD_RUN_CHECKS))))


class _ListAction(Action):
    def __call__(self, parser, namespace, values, option_string=None):
        print("Available checks:")
        for name in _XD_FILE_CHECKS + _XD_RUN_CHECKS:
            print(f"  {name}")
        parser.exit()


def main(argv=None):
    """``extra-data-validate``'s command line, output and exit status."""
    if argv is None:
        argv = sys.argv[1:]
    ap = ArgumentParser(prog="extra-data-validate")
    ap.add_argument("path", help="HDF5 file or run directory of HDF5 files.")
    ap.add_argument("-l", "--list", action=_ListAction, nargs=0,
                    help="List available checks (options for --skip)")
    ap.add_argument("--skip", action="append", default=[],
                    help="Skip a named check (may be used several times)")
    args = ap.parse_args(argv)

    bad_skips = set(args.skip) - set(_XD_FILE_CHECKS + _XD_RUN_CHECKS)
    if bad_skips:
        print("Unknown names passed to --skip:", ", ".join(sorted(bad_skips)))
        return 1

    path = args.path
    if os.path.isdir(path):
        print("Checking run directory:", path)
        print()
        validator = RunValidator(path, skip_checks=args.skip)
    else:
        print("Checking file:", path)
        try:
            fa = FileAccess(path)
        except OSError:
            print(str(ValidationError(validate(path, extra_checks=False))))
            return 1
        validator = FileValidator(fa, skip_checks=args.skip)

    validator.run_checks()
    print()
    if validator.problems:
        print(f"Validation failed! {len(validator.problems)} problems:")
        print(str(ValidationError(validator.problems)))
        return 1
    print("No problems found")
    return None


if __name__ == "__main__":
    sys.exit(main())
