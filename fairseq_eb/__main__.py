"""``python -m fairseq_eb env``: the environment report (the same as ``fairseq-eb-env``)."""
import sys

from fairseq_eb import env_report


def main(argv=None) -> int:
    """Dispatch ``env``; anything else is a usage error (exit 2)."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "env":
        print("usage: python -m fairseq_eb env [--json] [--patches]\n"
              "python -m fairseq_eb: error: the only command is 'env' (the environment report)", file=sys.stderr)
        return 2
    return env_report.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
