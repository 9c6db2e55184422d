"""Run a call that must not hang: in a daemon thread, with a deadline."""

import threading


def error_within(fn, seconds: float, what: str) -> BaseException | None:
    """Call ``fn()`` in a daemon thread; fail if it has not returned within ``seconds``.

    Returns the exception ``fn`` raised, or None. A hung call fails the test (``what`` says
    what hung) instead of hanging the test run.
    """
    done, errors = threading.Event(), []

    def run():
        try:
            fn()
        except Exception as err:   # noqa: BLE001 - handed back to the test
            errors.append(err)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(seconds), f"{what} hung"
    return errors[0] if errors else None
