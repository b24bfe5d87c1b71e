"""python -m vmstitch [--summary] SCRIPT [ARGS...]   (or: python -m vmstitch -m MODULE [ARGS...])

Runs a training or inference script unchanged, with vmstitch serving its CUDA memory: enables
vmstitch before the script runs (so before CUDA is first used), then runs the script as
__main__ with sys.argv and sys.path as if it had been started directly. Its memory logging
(torch.cuda.memory_allocated, max_memory_reserved, memory_stats, memory_summary, ...) keeps
working and answers from vmstitch.

--summary prints vmstitch.memory_summary() to stderr when the script ends.
"""
import os
import runpy
import sys

USAGE = "usage: python -m vmstitch [--summary] SCRIPT [ARGS...] | -m MODULE [ARGS...]"


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    summary = False
    while argv and argv[0].startswith("--"):
        opt = argv.pop(0)
        if opt == "--summary":
            summary = True
        elif opt in ("--help",):
            print(__doc__.strip())
            return 0
        elif opt == "--":
            break
        else:
            print("vmstitch: unknown option %s\n%s" % (opt, USAGE), file=sys.stderr)
            return 2
    if not argv or argv[0] in ("-h",):
        print(USAGE, file=sys.stderr)
        return 2

    import vmstitch
    vmstitch.enable()
    if summary:
        import atexit
        # Registered after enable()'s own exit hook, so it runs first, while stats still work.
        atexit.register(lambda: print(vmstitch.memory_summary(), file=sys.stderr))

    if argv[0] == "-m":
        if len(argv) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        module = argv[1]
        sys.argv = [module] + argv[2:]
        sys.path.insert(0, os.getcwd())
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return 0

    script = argv[0]
    if not os.path.exists(script):
        print("vmstitch: %s: no such file" % script, file=sys.stderr)
        return 2
    sys.argv = argv
    # As `python SCRIPT` would: the script's directory first on the path, instead of ours.
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
