from teachkit import envcheck


def test_declared_requirements_cover_the_design_card():
    wanted = envcheck.declared_requirements()
    for name in ["torch", "numpy", "numba", "matplotlib", "ipywidgets", "jupyterlab", "pytest", "nbval"]:
        assert name in wanted, f"{name} missing from the declared requirements"


def test_this_environment_is_ok(capsys):
    assert envcheck.report(), capsys.readouterr().out


def test_out_of_range_and_missing_packages_say_what_to_do():
    bad = envcheck.package_status("numpy", ">=999")
    assert not bad.ok and "outside >=999" in bad.advice and "make lab" in bad.advice
    missing = envcheck.package_status("surely-not-installed-pkg", ">=1")
    assert not missing.ok and missing.installed is None and "not installed" in missing.advice
