"""Module run by tests/cpp/test_python_launcher.cpp through run_python_module (the launcher of vidkv live, record
and report). argv[1] says what to do: probe FILE (write facts about the interpreter it runs in), return, exit CODE,
exit-none, exit-message TEXT, raise, interrupt (a real SIGINT to this process)."""
import os
import signal
import sys
import time


def main():
    mode = sys.argv[1]
    if mode == "probe":
        with open(sys.argv[2], "w") as f:
            f.write(f"name={__name__}\n")
            f.write(f"pid={os.getpid()}\n")
            f.write(f"exe={os.readlink('/proc/self/exe')}\n")
            f.write(f"executable={sys.executable}\n")
            f.write(f"prefix={sys.prefix}\n")
            f.write(f"argv={'|'.join(sys.argv[1:])}\n")
            f.write(f"argv0={sys.argv[0]}\n")
            for i, p in enumerate(sys.path[:4]):
                f.write(f"path{i}={p}\n")
    elif mode == "return":
        pass
    elif mode == "exit":
        sys.exit(int(sys.argv[2]))
    elif mode == "exit-none":
        sys.exit()
    elif mode == "exit-message":
        sys.exit(sys.argv[2])
    elif mode == "raise":
        raise ValueError("fixture failure")
    elif mode == "interrupt":
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(10)  # the handler raises KeyboardInterrupt here
        print("not interrupted", file=sys.stderr)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
