"""nbval helpers: print how long each notebook took (the budget is about 60 s each)."""

from collections import defaultdict

_durations: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report):
    if report.when == "call" or report.when == "setup":
        _durations[report.nodeid.split("::")[0]] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _durations:
        return
    terminalreporter.section("notebook durations")
    for name, seconds in sorted(_durations.items()):
        flag = "  <-- over the 60 s budget" if seconds > 60 else ""
        terminalreporter.write_line(f"{seconds:7.1f} s  {name}{flag}")
