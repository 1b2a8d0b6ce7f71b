"""Print why the two-host test was skipped even without -rs: a skip here
means the topology could not be built (no permission for ip netns)."""


def pytest_terminal_summary(terminalreporter):
    reasons = set()
    for rep in terminalreporter.stats.get("skipped", []):
        if "twohost" in rep.nodeid and isinstance(rep.longrepr, tuple):
            reasons.add(rep.longrepr[2])
    for why in sorted(reasons):
        terminalreporter.write_line("tests/twohost SKIPPED: %s" % why)
